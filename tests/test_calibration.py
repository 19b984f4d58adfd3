"""Calibration for a stated stranger rate (issue 11).

Unit tests of the tail model on synthetic data whose answer is known in closed form, and a
real-photo test: a database built with ``--max-strangers`` states its promise, and
``identify --max-strangers`` moves the decision threshold.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facekit.calibration import (
    Calibration,
    StrangerModel,
    Tail,
    calibrate,
    describe,
    pair_threshold,
)


# --------------------------------------------------------------------------- tail model
def test_tail_recovers_exponential_quantiles():
    # Exp(1): P(X > x) = exp(-x); the GPD of its excesses has xi = 0, beta = 1.
    x = np.random.default_rng(0).exponential(1.0, 200_000)
    tail = Tail.fit(x, 0.05)
    assert abs(tail.xi) < 0.05
    assert tail.beta == pytest.approx(1.0, rel=0.06)
    for p in (1e-2, 1e-3, 1e-5):
        assert tail.isf(p) == pytest.approx(-math.log(p), rel=0.05)
        assert tail.sf(tail.isf(p))[()] == pytest.approx(p, rel=1e-6)


def test_tail_recovers_pareto_shape():
    # Pareto with alpha = 4 (xi = 0.25): P(X > x) = x ** -4 for x >= 1.
    x = np.random.default_rng(1).pareto(4.0, 200_000) + 1.0
    tail = Tail.fit(x, 0.05)
    assert tail.xi == pytest.approx(0.25, abs=0.05)
    assert tail.isf(1e-4) == pytest.approx(10.0, rel=0.12)


def test_tail_body_and_prior_shrinkage():
    x = np.random.default_rng(2).normal(size=5000)
    tail = Tail.fit(x, 0.05)
    assert tail.sf(0.0)[()] == pytest.approx(0.5, abs=0.03)  # body quantiles
    assert tail.isf(0.5) == pytest.approx(0.0, abs=0.06)
    few = Tail.fit(x[:100], 0.1, prior=Tail(0, 0.1, 0.3, 1.0), prior_weight=1e6)
    assert few.xi == pytest.approx(0.3, abs=1e-3)  # 10 excesses: the prior's shape
    assert Tail.from_dict(tail.to_dict()).isf(1e-3) == pytest.approx(tail.isf(1e-3), rel=1e-4)


def test_stranger_rate_of_independent_normals_grows_with_gallery():
    # iid model with loc 0, scale 1 and an exponential tail above u=1 (p_u = 0.2):
    # rate(t, N) = 1 - (1 - 0.2 exp(-(t - 1))) ** N, known in closed form.
    sm = StrangerModel(100, Tail(1.0, 0.2, 0.0, 1.0), "iid", 100, np.zeros(3), np.ones(3))
    for n in (10, 100, 10_000):
        t = sm.threshold(0.01, n)
        expect = 1.0 - math.log((1 - (1 - 0.01) ** (1 / n)) / 0.2)
        assert t == pytest.approx(expect, abs=1e-6)
        assert sm.rate(t, n)[0] == pytest.approx(0.01, rel=1e-6)
    assert sm.threshold(0.01, 10) < sm.threshold(0.01, 100) < sm.threshold(0.01, 10_000)


def test_maxima_model_scales_with_gallery_size():
    m = StrangerModel(50, Tail(2.0, 0.2, 0.0, 0.5), "maxima", 50)
    assert m.rate(m.threshold(0.05))[0] == pytest.approx(0.05, rel=1e-6)
    # twice the people: 1 - (1 - p) ** 2
    t = m.threshold(0.05)
    assert m.rate(t, 100)[0] == pytest.approx(1 - 0.95**2, rel=1e-6)
    d = StrangerModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert d.threshold(0.01) == pytest.approx(m.threshold(0.01), abs=1e-6)


def _synthetic_gallery(n_people: int, photos: int, seed: int, dim: int = 64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    v = np.repeat(centres, photos, 0) + 0.6 * rng.normal(size=(n_people * photos, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    persons = np.repeat([f"p{i}" for i in range(n_people)], photos)
    return persons, v.astype(np.float32), rng


def test_calibrate_keeps_stated_rate_on_new_people():
    """Synthetic people (gaussian clusters): the promised stranger rate holds on strangers."""
    persons, v, rng = _synthetic_gallery(400, 3, 3)
    cal = calibrate(persons, {"m": v}, {"m": 1.0}, max_strangers=0.05)
    assert cal.source == "gallery" and cal.stranger_model is not None
    assert cal.expected_strangers == pytest.approx(0.05, rel=1e-3)
    # new people from the same distribution, one photo each
    sp, sv, _ = _synthetic_gallery(3000, 1, 4)
    ev = cal.pairwise_evidence({"m": sv}, {"m": v})
    achieved = float(np.mean(ev.max(1) >= cal.threshold))
    assert 0.025 <= achieved <= 0.075
    # a stricter rate gives a higher threshold and fewer named
    strict = cal.for_rate(0.01)
    assert strict.threshold > cal.threshold
    assert float(np.mean(ev.max(1) >= strict.threshold)) < achieved
    assert 0.0 < cal.expected_named <= 1.0
    assert "5.0% of strangers" in describe(cal)
    # stored and read back (the manifest)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.for_rate(0.01).threshold == pytest.approx(strict.threshold, abs=1e-6)


def test_threshold_grows_with_gallery_size():
    thr = []
    for n in (20, 200, 2000):
        persons, v, _ = _synthetic_gallery(n, 2, 5)
        thr.append(calibrate(persons, {"m": v}, {"m": 1.0}).threshold)
    assert thr[0] < thr[1] < thr[2]


def test_calibration_is_bounded_for_large_galleries():
    """300k faces x 128-d: seconds and bounded memory (sampled pairs, probes, reference people;
    docs/accuracy.md has the 1M-face figure)."""
    import resource
    import time

    n, dim = 300_000, 128
    rng = np.random.default_rng(6)
    v = rng.random((n, dim), dtype=np.float32) - 0.5
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    persons = (np.arange(n) // 4).astype(str)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    cal = calibrate(persons, {"m": v}, {"m": 1.0})
    cpu = time.process_time() - t0
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert cal.source == "gallery" and cal.model().persons == 75_000
    assert cpu < 30, cpu
    assert grew_mb < 800, grew_mb


def test_pair_threshold_uses_measured_tail():
    persons, v, _ = _synthetic_gallery(300, 2, 7)
    cal = calibrate(persons, {"m": v}, {"m": 1.0})
    ev = cal.pairwise_evidence({"m": v}, {"m": v})
    diff = persons[:, None] != persons[None, :]
    for rate in (0.01, 0.003):
        cut = pair_threshold(rate, cal)
        assert float(np.mean(ev[diff] >= cut)) == pytest.approx(rate, rel=0.25)
    assert pair_threshold(0.001, cal) > pair_threshold(0.01, cal)
    # defaults (no gallery): the measured default tail of dlib
    assert 1.5 < pair_threshold(0.003, Calibration.default(["dlib"])) < 3.5


def test_independence_model_mixes_gallery_and_default_tails():
    """rate = mean_i [1 - (1 - p(x_i)) ** N] with p = w * own + (1 - w) * default tail."""
    light, heavy = Tail(1.0, 0.2, 0.0, 0.3), Tail(1.0, 0.2, 0.0, 1.0)
    loc, scale = np.array([0.0, 0.5]), np.ones(2)
    mixed = StrangerModel(30, light, "iid", 29, loc, scale, 1.0, heavy, 0.25)
    t = 3.0
    x = t - loc
    p = 0.25 * 0.2 * np.exp(-(x - 1.0) / 0.3) + 0.75 * 0.2 * np.exp(-(x - 1.0) / 1.0)
    assert mixed.rate(t)[0] == pytest.approx(np.mean(1 - (1 - p) ** 30), rel=1e-9)
    own = StrangerModel(30, light, "iid", 29, loc, scale)
    default = StrangerModel(30, heavy, "iid", 29, loc, scale)
    assert own.threshold(0.01) < mixed.threshold(0.01) < default.threshold(0.01)
    back = StrangerModel.from_dict(json.loads(json.dumps(mixed.to_dict())))
    assert back.weight == 0.25 and back.threshold(0.01) == pytest.approx(mixed.threshold(0.01))
    assert "prior" not in own.to_dict()  # weight 1: nothing mixed, nothing stored


def test_small_gallery_model_counts_people_and_mixes_the_default_tail(monkeypatch):
    """30 people x 5 photos are 30 leave-one-person-out maxima, not 150: the independence
    model; its tail is the gallery's own mixed with the ensemble's default in the proportion
    m / (m + TAIL_PRIOR_SCORES) of the gallery's m scores."""
    import facekit._calibration_defaults as D

    persons, v, _ = _synthetic_gallery(30, 5, 8)
    cal = calibrate(persons, {"m": v}, {"m": 1.0})
    assert cal.stats["model"] == "iid" and cal.model().prior is None
    persons1, v1, _ = _synthetic_gallery(100, 1, 9)
    assert calibrate(persons1, {"m": v1}, {"m": 1.0}).stats["model"] == "maxima"
    monkeypatch.setitem(D.TAIL_PRIOR_SCORES, "m", 1000.0)
    mixed = calibrate(persons, {"m": v}, {"m": 1.0})
    m = mixed.stats["stranger_scores"]
    assert m == 150 * 29
    sm = mixed.model()
    assert sm.weight == pytest.approx(m / (m + 1000.0), abs=1e-6)
    assert sm.prior is not None and mixed.threshold != pytest.approx(cal.threshold, abs=1e-3)
    assert mixed.expected_strangers == pytest.approx(0.01, rel=1e-3)


def test_one_photo_galleries_on_the_default_tail_use_their_own_margin(monkeypatch):
    """Galleries of one photo per person whose independence model uses the default tail
    (fewer than MIN_TAIL_SCORES scores) take IID_MARGINS_ONE_PHOTO; with more photos, or once
    the gallery's own tail is fitted (30 people: 870 scores), the common IID_MARGINS."""
    import facekit._calibration_defaults as D

    monkeypatch.setitem(D.IID_MARGINS, "m", 1.4)
    monkeypatch.setitem(D.IID_MARGINS_ONE_PHOTO, "m", 0.7)
    p1, v1, _ = _synthetic_gallery(10, 1, 12)
    one = calibrate(p1, {"m": v1}, {"m": 1.0})
    assert one.stats["model"] == "iid" and one.model().margin == pytest.approx(0.7)
    assert one.expected_strangers == pytest.approx(0.01, rel=1e-3)
    monkeypatch.delitem(D.IID_MARGINS_ONE_PHOTO, "m")
    common = calibrate(p1, {"m": v1}, {"m": 1.0})
    assert common.model().margin == pytest.approx(1.4)
    # a smaller margin predicts fewer strangers at a threshold: the threshold is lower
    assert one.threshold < common.threshold - 1e-3
    monkeypatch.setitem(D.IID_MARGINS_ONE_PHOTO, "m", 0.7)
    p3, v3, _ = _synthetic_gallery(10, 3, 13)
    assert calibrate(p3, {"m": v3}, {"m": 1.0}).model().margin == pytest.approx(1.4)
    p30, v30, _ = _synthetic_gallery(30, 1, 14)
    own_tail = calibrate(p30, {"m": v30}, {"m": 1.0})
    assert own_tail.stats["stranger_scores"] == 30 * 29
    assert own_tail.model().margin == pytest.approx(1.4)
    # the stored model keeps the margin: another rate re-derived from the database agrees
    back = Calibration.from_dict(json.loads(json.dumps(one.to_dict())))
    assert back.for_rate(0.05).threshold == pytest.approx(one.for_rate(0.05).threshold, abs=1e-6)


def test_galleries_between_the_regimes_blend_the_two_models():
    """30 < N < 100 people: the independence model's rate interpolated geometrically toward
    the maxima model's, weight log(N / 30) / log(100 / 30); none at 30 people or at 100."""
    import facekit.calibration as C

    persons, v, _ = _synthetic_gallery(60, 3, 10)
    cal = calibrate(persons, {"m": v}, {"m": 1.0}, max_strangers=0.02)
    sm = cal.model()
    assert cal.stats["model"] == "iid+maxima" and sm.other is not None
    assert sm.blend == pytest.approx(math.log(2.0) / math.log(100 / 30), abs=1e-6)
    t = cal.threshold
    alone = C.StrangerModel.from_dict({**sm.to_dict(), "other": None})
    r_iid, r_max = alone.rate(t)[0], sm.other.rate(t)[0]
    assert r_iid != pytest.approx(r_max, rel=0.05)
    b = sm.blend
    assert sm.rate(t)[0] == pytest.approx(r_iid ** (1 - b) * r_max**b, rel=1e-9)
    assert cal.expected_strangers == pytest.approx(0.02, rel=1e-3)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.for_rate(0.05).threshold == pytest.approx(cal.for_rate(0.05).threshold, abs=1e-6)
    p30, v30, _ = _synthetic_gallery(30, 3, 11)
    assert calibrate(p30, {"m": v30}, {"m": 1.0}).stats["model"] == "iid"


# --------------------------------------------------------------------------- real photos
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


@pytest.mark.slow
def test_built_database_states_rate_and_identify_honours_it(tmp_path, lfw):
    names = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    people = tmp_path / "people"
    for n in names[:12]:
        (people / n).mkdir(parents=True)
        for p in sorted((lfw / n).glob("*.jpg"))[:2]:
            shutil.copy(p, people / n / p.name)
    db = tmp_path / "faces.db"
    r = _run("build-index", str(people), "-d", str(db), "-j", "1", "--max-strangers", "0.05")
    assert r.returncode == 0, r.stderr
    assert "at most 5.0% of strangers named at 12 people" in r.stderr
    assert "expected: 5.0% of strangers named" in r.stderr
    manifest_cal = None
    from facekit.database import Database

    d = Database.open(db)
    manifest_cal = d.manifest["calibration"]
    assert manifest_cal["max_strangers"] == 0.05
    assert manifest_cal["expected_strangers"] == pytest.approx(0.05, rel=0.01)
    info = d.info()
    assert info.max_strangers == 0.05 and info.expected_named is not None
    # an incremental build keeps the stated rate and re-calibrates for the larger gallery
    for n in names[12:16]:
        (people / n).mkdir(parents=True)
        for p in sorted((lfw / n).glob("*.jpg"))[:2]:
            shutil.copy(p, people / n / p.name)
    r = _run("build-index", str(people), "-d", str(db), "-j", "1")
    assert r.returncode == 0, r.stderr
    assert "at most 5.0% of strangers named at 16 people" in r.stderr
    # identify: the same stranger face, scored against a lax and a strict rate
    stranger = sorted((lfw / names[-1]).glob("*.jpg"))[:2]
    conf = {}
    for rate in ("0.3", "0.001"):
        r = _run(
            "identify",
            *map(str, stranger),
            "-d",
            str(db),
            "-j",
            "1",
            "-f",
            "json",
            "--max-strangers",
            rate,
        )
        assert r.returncode in (0, 1), r.stderr
        faces = [f for rec in json.loads(r.stdout) for f in rec["faces"]]
        assert faces
        conf[rate] = [f["candidates"][0]["confidence"] for f in faces]
        for f in faces:  # named exactly when the top candidate reaches 50
            assert (f["identity"] is not None) == (f["candidates"][0]["confidence"] >= 50)
    assert all(a > b for a, b in zip(conf["0.3"], conf["0.001"]))
    lax, strict = (Database.open(db).calibration.for_rate(x).threshold for x in (0.3, 0.001))
    assert lax < strict


def test_describe_says_why_the_named_share_is_missing():
    """Too few leave-one-out probes: the line says how many there are, not that no person has
    2 photos (which was false for a gallery with one person of 5 photos)."""
    cal = Calibration(
        impostor={"m": (0.6, 0.05)},
        weights={"m": 1.0},
        expected_strangers=0.01,
        stats={"loo_genuine": 5},
    )
    text = describe(cal)
    assert "this gallery has 5" in text and "no person has 2" not in text
