"""Training progress in a Jupyter notebook: one output line updated in place, through a real IPython kernel.

A kernel is started with jupyter_client (what Jupyter itself uses) and trains penguins for
3 epochs; the test reads the kernel's iopub messages, which are what a notebook front end
renders. Not tested here: how a particular front end (JupyterLab, VS Code, Colab) draws them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")
pytest.importorskip("jupyter_client", reason="pip install -e '.[test]'")

TRAIN = """
import dlw
from dlw.console import Console
print("notebook", Console().notebook, "terminal", Console().interactive)
overrides = ["model.kind=mlp", "model.hidden_layers=[8]", "train.epochs=3", "train.batch_size=32", "train.early_stopping=false"]
dlw.Workflow.from_config("penguins", overrides=overrides).train(out="run")
"""


def _run_in_kernel(code: str, cwd) -> list[dict]:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(cwd))
    messages: list[dict] = []
    try:
        reply = client.execute_interactive(code, output_hook=messages.append, timeout=600)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    return messages


def test_progress_is_one_line_updated_in_place_in_a_kernel(tmp_path):
    messages = _run_in_kernel(TRAIN, tmp_path)
    printed = "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")
    assert "notebook True terminal False" in printed
    shown = [m for m in messages if m["msg_type"] == "display_data" and m["content"].get("transient", {}).get("display_id")]
    assert len(shown) == 1  # one line per fit, not one per epoch
    line = shown[0]["content"]["transient"]["display_id"]
    updates = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == line]
    assert [u.split(":")[0].strip() for u in updates] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_loss" in u for u in updates)
    assert "ipywidgets" not in printed  # rich's live display would ask for it
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_no_notebook_outside_a_kernel():
    code = "from dlw.console import Console; import IPython; print(Console().notebook, Console().live_line())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "None"], done.stderr
