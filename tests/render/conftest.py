"""The one Blender scene of the render tests (Blender state is per process, so it is built once)."""

import pytest

from render.quality import Quality

#: Tiny, fast renders: the tests look at geometry and colour, not at noise.
TEST_QUALITY = Quality(samples=4, adaptive_threshold=0.0, denoise=False, max_bounces=2, diffuse_bounces=2)
TEST_SIZE = 64


@pytest.fixture(scope="session")
def scene():
    from render.scene import RenderSettings, Scene

    live = Scene(RenderSettings(size=TEST_SIZE, quality=TEST_QUALITY, device="cpu", threads=2))
    yield live
    live.close()
