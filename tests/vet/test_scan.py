"""vet_path on every crafted attack, on the real bundled models, and on bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.vet import Severity, Verdict, vet_path
from tests.vet.corpus import MARKER, Case, gguf_bytes

ATTACKS = [
    "exec_reduce.pkl",
    "os_system.pkl",
    "proto0_eval.pkl",
    "stack_global_memo.pkl",
    "stack_global_computed.pkl",
    "inst.pkl",
    "obj.pkl",
    "newobj.pkl",
    "ext1.pkl",
    "concatenated.pkl",
    "broken_stream.pkl",
    "nested_loads.pkl",
    "getattr_gadget.pkl",
    "unknown_call.pkl",
    "collect_env.pkl",
    "dotted_name.pkl",
    "shadow_pickle.pkl",
    "payload.bin",
    "weights.dat",
    "nullifai_7z.bin",
    "object_array.npy",
    "object_array.npz",
    "torch_payload.pt",
    "torch_deflated.pt",
    "torch_bzip2.pt",
    "torch_duplicate.pt",
    "torch_odd_path.pt",
    "torch_crc.pt",
    "torch_prepended.pt",
    "torch_header_mismatch.pt",
    "st_huge_header.safetensors",
    "st_header_past_eof.safetensors",
    "st_bad_json.safetensors",
    "st_duplicate_key.safetensors",
    "st_out_of_bounds.safetensors",
    "st_overlap.safetensors",
    "st_shape_mismatch.safetensors",
    "st_trailing.safetensors",
    "gguf_huge_kv.gguf",
    "gguf_huge_string.gguf",
    "gguf_tensor_oob.gguf",
    "gguf_misaligned.gguf",
    "gguf_bad_type.gguf",
    "gguf_bad_version.gguf",
    "gguf_ssti.gguf",
    "gguf_subclasses.gguf",
    "gguf_attr_filter.gguf",
    "gguf_include.gguf",
    "gguf_gated.gguf",
    "gguf_bidi.gguf",
    "gguf_injection.gguf",
    "gguf_token_tag.gguf",
    "random.bin",
    "html.gguf",
]
#: Payloads that really fire under pickle.load (proved below), so the detections above are not of toys.
LIVE = [
    "exec_reduce.pkl",
    "os_system.pkl",
    "proto0_eval.pkl",
    "stack_global_memo.pkl",
    "inst.pkl",
    "obj.pkl",
    "concatenated.pkl",
    "broken_stream.pkl",
    "nested_loads.pkl",
    "getattr_gadget.pkl",
    "unknown_call.pkl",
    "dotted_name.pkl",
    "payload.bin",
    "weights.dat",
]


@pytest.mark.parametrize("name", ATTACKS)
def test_crafted_attack_is_fail_with_its_code(corpus: dict[str, Case], name: str) -> None:
    case = corpus[name]
    report = vet_path(case.path, digests=False)
    codes = {f.code for f in report.findings if f.severity == Severity.FAIL}
    assert report.verdict == Verdict.FAIL, f"{case.attack}: {report.to_json()}"
    assert case.codes <= codes, f"{case.attack}: expected {case.codes}, got {codes}"
    assert not (case.path.parent / MARKER).exists()


def test_every_case_in_the_corpus_is_covered(corpus: dict[str, Case]) -> None:
    expected = {n for n, c in corpus.items() if c.expect == "fail"}
    assert expected == set(ATTACKS)


def test_crafted_payloads_are_live_when_really_unpickled(corpus: dict[str, Case], tmp_path: Path) -> None:
    # Proof that the corpus is real: in a throwaway subprocess and folder, pickle.load fires each payload
    # (which only writes a marker file). vet itself never gets here.
    # Shell payloads (os.system, Popen, pipepager) finish asynchronously: poll for the markers, bounded.
    script = (
        "import io, os, pickle, sys, time\n"
        "dirs = {}\n"
        "for p in sys.argv[1:]:\n"
        "    d = os.path.join(os.getcwd(), os.path.basename(p) + '.d'); os.mkdir(d); os.chdir(d)\n"
        "    dirs[os.path.basename(p)] = d\n"
        "    f = io.BytesIO(open(p, 'rb').read())\n"
        "    try:\n"
        "        pickle.load(f); pickle.load(f)\n"
        "    except Exception:\n"
        "        pass\n"
        "    os.chdir('..')\n"
        "fired = lambda: [n for n, d in dirs.items() if os.path.exists(os.path.join(d, 'MARKER'))]\n"
        "for _ in range(100):\n"
        "    if len(fired()) == len(dirs): break\n"
        "    time.sleep(0.1)\n"
        "print('\\n'.join(fired()))\n"
    )
    paths = [str(corpus[n].path) for n in LIVE]
    res = subprocess.run(
        [sys.executable, "-c", script, *paths], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert sorted(res.stdout.split()) == sorted(LIVE), res.stderr[-2000:]


def test_npy_payload_is_live_when_really_loaded_with_numpy(corpus: dict[str, Case], tmp_path: Path) -> None:
    script = (
        "import numpy, sys\n"
        "try:\n    numpy.load(sys.argv[1], allow_pickle=True)\nexcept Exception:\n    pass\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(corpus["object_array.npy"].path)], cwd=tmp_path, timeout=60
    )
    assert (tmp_path / MARKER).exists()


def test_bundled_smollm2_gguf_passes_with_model_card() -> None:
    report = vet_path(bundled.smollm2())
    assert report.verdict == Verdict.PASS, report.findings
    meta = report.files[0].metadata
    assert meta["metadata"]["general.architecture"] == "llama"
    assert meta["card"]["parameters"] == 134_515_008
    assert meta["card"]["quantization"] == "Q4_1"
    assert meta["card"]["context_length"] == 8192
    assert meta["card"]["chat_template_sha256"].startswith("sha256:")
    assert report.files[0].digest == (
        "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    )


def test_bundled_gemma3_gguf_passes() -> None:
    report = vet_path(bundled.gemma3(), digests=False)
    assert report.verdict == Verdict.PASS, report.findings
    card = report.files[0].metadata["card"]
    assert (card["architecture"], card["quantization"], card["license"]) == ("gemma3", "Q4_K_M", "gemma")
    assert card["parameters"] == 268_098_176


def test_bundled_minilm_folder_passes() -> None:
    report = vet_path(bundled.minilm())
    assert report.verdict == Verdict.PASS, report.findings
    formats = {f.path: f.format for f in report.files}
    assert formats["model.safetensors"] == "safetensors"
    assert formats["config.json"] == "hf-config"
    assert all(f.digest for f in report.files)


def test_numpy_safetensors_file_passes(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    p = tmp_path / "model.safetensors"
    save_file(
        {
            "a": np.ones((3, 5), np.float32),
            "b": np.arange(7, dtype=np.int64),
            "c": np.zeros((2, 2), np.float16),
        },
        str(p),
        metadata={"format": "np"},
    )
    report = vet_path(p)
    assert report.verdict == Verdict.PASS
    assert report.files[0].metadata["parameters"] == 15 + 7 + 4


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_real_torch_save_state_dict_passes(tmp_path: Path, legacy: bool) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    p = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), p, _use_new_zipfile_serialization=not legacy)
    report = vet_path(p)
    assert report.verdict == Verdict.PASS, report.to_json()
    assert {f.code for f in report.findings} == {"PICKLE_FORMAT"}


def test_numeric_npy_and_npz_pass(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.savez(tmp_path / "b.npz", x=np.zeros(3), y=np.ones((2, 2), np.int8))
    assert vet_path(tmp_path / "a.npy").verdict == Verdict.PASS
    report = vet_path(tmp_path / "b.npz")
    assert report.verdict == Verdict.PASS and report.files[0].format == "npz"


def test_plain_pickle_of_an_ordered_dict_passes(tmp_path: Path) -> None:
    p = tmp_path / "state.pkl"
    p.write_bytes(pickle.dumps(OrderedDict(a=[1, 2.5], b={"c": (True, None)}), protocol=4))
    assert vet_path(p).verdict == Verdict.PASS


def test_unknown_class_reference_fails_with_or_without_strict(tmp_path: Path) -> None:
    # A referenced name is one higher-order call (map, filter, partial) away from being run.
    import argparse

    p = tmp_path / "ckpt.pt"
    p.write_bytes(pickle.dumps({"args": argparse.Namespace(lr=0.1)}, protocol=2))
    for strict in (False, True):
        report = vet_path(p, strict=strict)
        assert report.verdict == Verdict.FAIL
        assert "PICKLE_UNKNOWN_GLOBAL" in {f.code for f in report.findings}


def _hf_folder(root: Path, config: dict[str, object], files: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save_file

    root.mkdir()
    save_file({"w": np.ones(4, np.float32)}, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(config))
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def test_auto_map_and_python_files_warn_and_fail_in_strict(tmp_path: Path) -> None:
    folder = _hf_folder(
        tmp_path / "m",
        {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}},
        {"modeling_x.py": f"open({MARKER!r}, 'w')\n"},
    )
    report = vet_path(folder)
    assert report.verdict == Verdict.WARN
    codes = {f.code: f for f in report.findings}
    assert "modeling_x.py" in codes["REMOTE_CODE_AUTO_MAP"].message
    assert "modeling_x.py" in codes["REMOTE_CODE_FILES"].message
    assert vet_path(folder, strict=True).verdict == Verdict.FAIL
    assert not (folder / MARKER).exists()


def test_tokenizer_config_chat_template_is_scanned(tmp_path: Path) -> None:
    folder = _hf_folder(
        tmp_path / "m",
        {"model_type": "x"},
        {
            "tokenizer_config.json": json.dumps(
                {"chat_template": "{{ joiner.__init__.__globals__ }}", "eos_token": "</s>\u200b"}
            )
        },
    )
    report = vet_path(folder)
    codes = {f.code for f in report.findings}
    assert report.verdict == Verdict.FAIL
    assert {"TEMPLATE_DUNDER_ACCESS", "TOKEN_INVISIBLE_UNICODE"} <= codes


def test_pickle_disguised_as_text_inside_a_folder_is_found_by_content(tmp_path: Path) -> None:
    from tests.vet.corpus import exec_pickle

    folder = _hf_folder(tmp_path / "m", {"model_type": "x"})
    (folder / "notes.txt").write_bytes(exec_pickle())
    report = vet_path(folder)
    assert report.verdict == Verdict.FAIL
    assert any(f.file == "notes.txt" and f.code == "PICKLE_DANGEROUS_GLOBAL" for f in report.findings)


def test_truncated_bundled_gguf_fails_cleanly(tmp_path: Path) -> None:
    p = tmp_path / "cut.gguf"
    with bundled.smollm2().open("rb") as fh:
        p.write_bytes(fh.read(3 << 20))
    report = vet_path(p, digests=False)
    assert report.verdict == Verdict.FAIL
    assert report.findings[0].code == "STRUCTURE_INVALID"
    assert "past the end" in report.findings[0].message or "remain" in report.findings[0].message


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, bytes(range(256)) * 10])
def test_unrecognised_single_file_is_unusable_input(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "weights.xyz"
    p.write_bytes(content)
    with pytest.raises(UnusableInput) as exc:
        vet_path(p)
    assert str(p) in exc.value.message


def test_missing_path_and_folder_without_model_are_unusable(tmp_path: Path) -> None:
    with pytest.raises(UnusableInput):
        vet_path(tmp_path / "nope")
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(UnusableInput, match="no model file"):
        vet_path(tmp_path)


def test_every_prefix_of_a_gguf_fails_or_passes_without_crashing(tmp_path: Path) -> None:
    data = gguf_bytes({"general.architecture": "llama", "tokenizer.chat_template": "{{ x }}"}, 2)
    p = tmp_path / "t.gguf"
    for cut in range(0, len(data), 7):
        p.write_bytes(data[:cut])
        try:
            report = vet_path(p, digests=False)
        except UnusableInput:
            continue
        assert report.verdict == Verdict.FAIL


def test_symlinks_are_reported_file_links_followed_folder_links_not(tmp_path: Path) -> None:
    from tests.vet.corpus import exec_pickle

    folder = _hf_folder(tmp_path / "m", {"model_type": "x"})
    (tmp_path / "blob").write_bytes(exec_pickle())
    (tmp_path / "elsewhere").mkdir()
    (folder / "pytorch_model.bin").symlink_to(tmp_path / "blob")  # like a Hugging Face cache snapshot
    (folder / "sub").symlink_to(tmp_path / "elsewhere")
    report = vet_path(folder)
    found = {(f.code, f.file, f.severity) for f in report.findings}
    assert ("PICKLE_DANGEROUS_GLOBAL", "pytorch_model.bin", Severity.FAIL) in found
    assert ("FILE_SYMLINK", "pytorch_model.bin", Severity.INFO) in found
    assert ("FILE_SYMLINK", "sub", Severity.WARN) in found
    assert vet_path(folder, strict=True).verdict == Verdict.FAIL
