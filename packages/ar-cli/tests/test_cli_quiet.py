"""`ar` starts without torch's two Enum-as-pytree-constant notices (torchao 0.18 under torch 2.13), and no other
warning is hidden."""

import logging
import os
import subprocess
import sys

import pytest

from ar_cli.quiet import silence_enum_pytree_notices

NOTICE = ("%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. Calling "
          "register_constant() on Enum subclasses is deprecated and will be an error in a future release.")


def test_only_the_enum_notice_is_dropped(caplog):
    silence_enum_pytree_notices()
    silence_enum_pytree_notices()  # idempotent
    logger = logging.getLogger("torch.utils._pytree")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning(NOTICE, "<enum 'KernelPreference'>")
        logger.warning("some other pytree warning")
    assert [r.getMessage() for r in caplog.records] == ["some other pytree warning"]


@pytest.mark.slow  # fresh interpreters importing transformers and torchao
def test_ar_inspect_prints_no_enum_notice(tiny_model_dir):
    code = "import sys; from ar_cli.main import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "inspect", str(tiny_model_dir)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Enum subclass" not in proc.stderr
    import importlib.util

    if importlib.util.find_spec("torchao") is not None:  # without the filter the notice does appear
        bare = subprocess.run([sys.executable, "-c", "import torchao"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert "Enum subclass" in bare.stderr
