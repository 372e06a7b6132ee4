"""install.cuda against the base: the implicit base follows the CUDA version, an explicit one that
NVIDIA does not publish for is an error naming the line to write, an unknown version a warning."""

from __future__ import annotations

import pytest

from frontend import cuda
from frontend import spec as S
from frontend.errors import ValueError_


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


def test_no_base_image_named_follows_the_cuda_version(ev) -> None:
    """envd 0.x files assume Ubuntu 20.04 with CUDA 11.x; envd 1.x would ask for an image that does not exist."""
    s = ev(body("base(dev=True)", 'install.cuda(version="11.3.1", cudnn="8")'))
    assert s.base == S.Base("ubuntu:20.04", True, S.Pos("build.envd", 2, 5))
    assert s.cuda.image == "docker.io/nvidia/cuda:11.3.1-cudnn8-devel-ubuntu20.04"
    (note,) = s.notes
    assert note.pos == S.Pos("build.envd", 3, 5)
    assert "no base image is named" in note.message and 'write base(image="ubuntu:20.04")' in note.message
    assert s.warnings == ()
    # what the compiler checks again (spec read back from a label): the same image
    assert cuda.resolve(s.cuda.version, s.cuda.cudnn, dev=s.dev, base_image=s.base.image).image == s.cuda.image
    s = ev(body('install.cuda(version="11.6.2")'))
    assert s.base.image == "ubuntu:20.04" and s.cuda.image.endswith(":11.6.2-cudnn8-runtime-ubuntu20.04")


def test_no_base_image_and_a_version_envd_can_build_gives_envds_image(ev) -> None:
    s = ev(body("base(dev=True)", 'install.cuda(version="12.1.1")'))
    assert s.base.image == "ubuntu:22.04" and s.cuda.image.endswith(":12.1.1-cudnn8-devel-ubuntu22.04")
    assert s.notes == () and s.warnings == ()


def test_an_explicit_base_without_that_cuda_names_the_line_to_write(ev) -> None:
    with pytest.raises(ValueError_) as info:
        ev(body('base(image="ubuntu:22.04", dev=True)', 'install.cuda(version="11.3.1")'))
    assert str(info.value) == (
        "build.envd:3:5: install.cuda(): nvidia/cuda has no CUDA 11.3.1 images for Ubuntu 22.04; valid Ubuntu "
        'versions: 18.04, 20.04; write base(image="ubuntu:20.04", dev=True) at build.envd:2:5 instead'
    )


def test_a_well_formed_version_missing_from_the_table_is_a_warning(ev) -> None:
    s = ev(body('base(image="ubuntu:22.04", dev=True)', 'install.cuda(version="12.7.0")'))
    assert s.cuda.image == "docker.io/nvidia/cuda:12.7.0-cudnn-devel-ubuntu22.04"
    (warning,) = s.warnings
    assert warning.pos == S.Pos("build.envd", 3, 5)
    assert "CUDA 12.7.0 is not in envbuild's table" in warning.message and "spelled like 12.6.3's" in warning.message
    with pytest.raises(ValueError_, match=r"no images for CUDA 12\.7 "):
        ev(body('install.cuda(version="12.7")'))
    with pytest.raises(ValueError_, match=r"no images for CUDA 9\.0\.0 "):
        ev(body('install.cuda(version="9.0.0")'))


@pytest.mark.parametrize(
    ("first", "second", "call"),
    [
        ('base(image="ubuntu:20.04")', "base(dev=True)", "base()"),
        ('install.python("3.10")', 'install.python("3.12")', "install.python()"),
        ("config.jupyter()", "config.jupyter(port=8899)", "config.jupyter()"),
    ],
)
def test_a_second_call_of_a_singleton_warns_with_both_positions(ev, first: str, second: str, call: str) -> None:
    s = ev(body(first, "pass", second))
    (warning,) = s.warnings
    assert warning.pos == S.Pos("build.envd", 4, 5)
    assert warning.message == f"{call} is called again: this call at build.envd:4:5 replaces the one at build.envd:2:5"
