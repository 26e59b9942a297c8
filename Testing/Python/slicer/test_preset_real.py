"""On real studies the panel's preset checks what a reader would load: the shipped model, ProstateX."""

from __future__ import annotations

from SeqClassifierLib.app.output import make_row
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierSlicer import review


def test_axial_t2w_highest_b_dwi_and_adc_are_checked_on_real_prostatex(prostatex_discovery):
    records = prostatex_discovery.series
    preds = Classifier(None, device="cpu", precision="fp32").classify(records)
    rows = [review.ReviewRow.from_result_row(make_row(r, p)) for r, p in zip(records, preds)]
    checked = review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)
    by_uid = {r.series_uid: r for r in records}
    names = sorted((by_uid[u].patient_id, by_uid[u].description) for u in checked)
    assert names == [
        ("ProstateX-0000", "ep2d_diff_tra_DYNDISTCALC_BVAL"),   # the calculated b = 1400: the highest b
        ("ProstateX-0000", "ep2d_diff_tra_DYNDIST_ADC"),
        ("ProstateX-0000", "t2_tse_tra"),
        ("ProstateX-0001", "ep2d_diff_tra_DYNDIST_MIXCALC_BVAL"),
        ("ProstateX-0001", "ep2d_diff_tra_DYNDIST_MIX_ADC"),
        ("ProstateX-0001", "t2_tse_tra"),
        ("ProstateX-0001", "t2_tse_tra"),
    ]
    # and because few right predictions are flagged, the preset has something to check at all
    assert sum(p.needs_review for p in preds) <= 2
