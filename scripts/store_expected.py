#!/usr/bin/env python3
"""Store what the shipped default model says on the shared ProstateX studies (fp32), for the regression
test Testing/Python/model/test_default_model.py::test_default_model_matches_the_stored_result.
Run it once after shipping a new default model:  .venv/bin/python scripts/store_expected.py"""

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SeqClassifier"))

from SeqClassifierLib.dicom.discovery import discover_series  # noqa: E402
from SeqClassifierLib.model.checkpoint import read_card  # noqa: E402
from SeqClassifierLib.model.classifier import Classifier, default_model_path  # noqa: E402

data = Path(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data")) / "prostatex"
preds = Classifier(device="cpu", precision="fp32").classify(discover_series(data).series)
doc = {"model_sha256": read_card(default_model_path())["weights_sha256"], "data": "shared/data/prostatex",
       "series": {p.series_uid: {"label": p.label.value, "group": p.group, "review_reasons": p.review_reasons,
                                 "probabilities": p.probabilities} for p in preds}}
out = REPO / "Testing" / "Python" / "model" / "expected_prostatex.json"
out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
print(f"wrote {out}: {len(preds)} series")
