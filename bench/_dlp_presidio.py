"""Runs inside bench/.venv-presidio: Presidio's default analyser over texts, one JSON document out.

Usage: python _dlp_presidio.py TEXTS.jsonl > predictions.json

Presidio's default NLP engine is spaCy's en_core_web_lg, which is not on PyPI and cannot be fetched
here; the analyser runs with spaCy's blank English pipeline instead, i.e. every default recognizer
(patterns, validators, phonenumbers) but no NER for names and places. tldextract (used by Presidio's
e-mail and URL recognizers) fetches the public-suffix list from the internet on first use; it is
pointed at its bundled snapshot so the run stays offline.
"""

from __future__ import annotations

import json
import sys
import time

import spacy
import tldextract

tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())

from presidio_analyzer import AnalyzerEngine  # noqa: E402
from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: E402


class BlankEnglish(SpacyNlpEngine):
    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}


def main() -> None:
    texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
    engine = BlankEnglish(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    analyzer.analyze("warm up 4111 1111 1111 1111 a@b.com", language="en")
    out = []
    start = time.perf_counter()
    for text in texts:
        out.append([[r.start, r.end, r.entity_type, r.score] for r in analyzer.analyze(text, language="en")])
    elapsed = time.perf_counter() - start
    json.dump({"elapsed_s": elapsed, "predictions": out,
               "recognizers": sorted(r.name for r in analyzer.registry.recognizers)}, sys.stdout)


if __name__ == "__main__":
    main()
