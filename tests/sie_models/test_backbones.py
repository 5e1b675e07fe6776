import pytest
import torch
from torch import nn

from sie_models.backbones import BasicBlock, representation_dim, resnet18, resolve_stem

torch.set_num_threads(1)

# torchvision's resnet18 has 11,689,512 parameters, of which the 512 -> 1000 classifier holds 513,000.
RESNET18_TRUNK_PARAMETERS = 11_689_512 - 513_000


@pytest.mark.parametrize(
    ("image_size", "stem", "spatial_after_stem"),
    [(64, "small", 64), (128, "small", 128), (256, "imagenet", 64)],
)
def test_output_shapes_and_auto_stem(image_size, stem, spatial_after_stem):
    model = resnet18(width=4, image_size=image_size).eval()
    images = torch.randn(2, 3, image_size, image_size)
    assert resolve_stem("auto", image_size) == stem
    assert model.stem(images).shape[-1] == spatial_after_stem
    with torch.no_grad():
        assert model(images).shape == (2, 32)


def test_stem_override_and_bad_options():
    small = resnet18(width=4, image_size=256, stem="small")
    assert not any(isinstance(layer, nn.MaxPool2d) for layer in small.stem)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    imagenet = resnet18(width=4, image_size=64, stem="imagenet")
    assert isinstance(imagenet.stem[-1], nn.MaxPool2d) and imagenet.stem[0].kernel_size == (7, 7)
    with pytest.raises(ValueError, match="unknown stem"):
        resnet18(width=4, stem="tiny")
    with pytest.raises(ValueError, match="width"):
        resnet18(width=0)


def test_width_64_is_resnet18_with_a_512_d_representation():
    model = resnet18(width=64)
    assert model.output_dim == representation_dim(64) == 512
    assert sum(p.numel() for p in model.parameters()) == RESNET18_TRUNK_PARAMETERS
    assert representation_dim(16) == 128


def test_last_batch_norm_of_every_block_starts_at_zero():
    model = resnet18(width=4)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    for block in blocks:
        assert torch.all(block.bn2.weight == 0)
        assert torch.all(block.bn1.weight == 1)
    # A zero gamma makes each block return relu(shortcut(x)) at initialisation.
    block = blocks[0].eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(x))
