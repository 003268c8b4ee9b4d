"""mousebehav.frame_model: window statistics against a direct computation, per-frame training that never mixes folds,
repeated frames, model files (round trip, refusals), on real posture stores of B-SOiD clips."""
import collections, os, zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent/'shared'/'data'
if 'MOUSEBEHAV_DATA_DIR' not in os.environ and DATA.exists(): os.environ['MOUSEBEHAV_DATA_DIR'] = str(DATA)

from mousebehav.frame_model import (STATS, FrameModelConfig, FrameModelError, fit_frames, frame_model_fns, is_frame_model,
                                    load_frame_model, predict_frames_proba, predict_proba, repeated_frames, save_frame_model,
                                    sequence_proba, window_columns, window_features, window_frames)
from mousebehav import evaluate as E, sequences as S
from mousebehav.data import labels_table
from mousebehav.posture import POSTURE_COLUMNS

FAST = FrameModelConfig(model='extratrees', n_estimators=40, min_samples_leaf=5)


def direct(x, fps, windows_s, stats):
    "The window statistics by a plain loop over frames: numpy mean/std/min/max, np.polyfit for the slope."
    T, D = x.shape; cols = [x]
    for w in windows_s:
        h = window_frames(w, fps) // 2
        for s in stats:
            v = np.zeros((T, D))
            for t in range(T):
                a, b = max(0, t - h), min(T, t + h + 1)
                seg, sec = x[a:b], np.arange(a, b) / fps
                if s == 'mean': v[t] = seg.mean(0)
                elif s == 'std': v[t] = seg.std(0)
                elif s == 'min': v[t] = seg.min(0)
                elif s == 'max': v[t] = seg.max(0)
                elif s == 'slope': v[t] = np.polyfit(sec, seg, 1)[0] if b - a > 1 else 0
                else: v[t] = np.abs(np.diff(seg, axis=0)).mean(0) * fps if b - a > 1 else 0
            cols.append(v)
    return np.concatenate(cols, 1)


@pytest.mark.parametrize('T,fps', [(1, 15), (2, 15), (5, 5), (40, 15), (161, 30), (300, 7.5)])
def test_window_features_match_direct(T, fps):
    rng = np.random.default_rng(T)
    x = rng.normal(size=(T, 3)) * [1, 50, 0.01] + [0, 1000, -3]      # scales and offsets far apart
    x[T // 3: T // 2] = x[T // 3]                                     # a flat stretch: std 0, slope 0
    for windows, stats in [((0.25, 0.5, 1, 2), STATS), ((3.0,), ('slope', 'std')), ((0.1,), ('mean',))]:
        got = window_features(x, fps, windows, stats)
        want = direct(x, fps, windows, stats)
        assert got.dtype == np.float32 and got.shape == want.shape == (T, 3 + 3 * len(windows) * len(stats))
        tol = 2e-6 * np.abs(want) + 1e-6 * np.abs(want).max(0, keepdims=True).clip(1e-3)   # float32, per column's scale
        err = np.abs(got - want)
        assert (err <= tol).all(), f"{windows} {stats}: worst column {int((err / tol).max(0).argmax())}, error {err.max()}" 
        assert len(window_columns(['a', 'b', 'c'], windows, stats)) == got.shape[1]


def test_window_lengths_and_names():
    assert [window_frames(w, 15) for w in (0.25, 0.5, 1, 2)] == [5, 9, 15, 31]   # round(3.75)=4 → 5, round(7.5)=8 → 9
    assert [window_frames(w, 5) for w in (0.1, 0.25, 1, 2)] == [1, 1, 5, 11]
    assert window_columns(['speed'], (0.5,), ('mean', 'slope')) == ['speed', 'speed_mean_0.5s', 'speed_slope_0.5s']


def test_window_features_refuse_bad_input():
    x = np.ones((20, 2)); x[7, 1] = np.nan; x[9, 0] = np.inf
    with pytest.raises(FrameModelError, match=r'2 row\(s\).*7, 9'): window_features(x, 15)
    with pytest.raises(FrameModelError, match='shape'): window_features(np.ones(5), 15)
    with pytest.raises(FrameModelError, match='statistic'): window_features(np.ones((5, 2)), 15, stats=('median',))
    with pytest.raises(FrameModelError, match='frame rate'): window_features(np.ones((5, 2)), 0)
    for bad in [dict(model='svm'), dict(windows_s=(0, 1)), dict(stats=('mean', 'mode')), dict(repeats='ignore'),
                dict(max_features=0), dict(class_weight='inverse'), dict(max_bins=300)]:
        with pytest.raises(FrameModelError, match='invalid FrameModelConfig'): FrameModelConfig(**bad)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    "Posture sequences of 15 real B-SOiD clips: three coarse classes (groom, rear, walk) in five folds."
    lab = labels_table('bsoid-clips')
    lab = lab[lab.behavior.isin(['face_groom', 'rearing', 'locomote_plus'])].reset_index(drop=True)
    feats = E.dataset_features('bsoid-clips', lab, tmp_path_factory.mktemp('feats'), backbone='posture', stride=1)
    ss = S.build_sequences(lab, feats, scheme='coarse')
    assert len(ss) == 15 and ss.classes == ['groom', 'rear', 'walk'] and sorted(set(ss.folds.tolist())) == [1, 2, 3, 4, 5]
    return ss


def _frames(ss, cfg):
    "Training frames `fit_frames` takes from `ss` (repeated frames left out, at most max_frames_per_sequence each)."
    n = [int((~repeated_frames(s.x)).sum()) for s in ss.sequences]
    return sum(min(k, cfg.max_frames_per_sequence or k) for k in n)


def test_training_never_mixes_folds(clips):
    fit, pred = frame_model_fns(FAST); seen = []
    def fit_fn(train):
        seen.append(train); return fit(train)
    def pred_fn(model, test):
        k = set(test.folds.tolist())
        assert len(k) == 1 and not k & set(seen[-1].folds.tolist())
        assert len(seen[-1]) + len(test) == len(clips)
        assert model.history['n_frames'] == _frames(seen[-1], FAST)      # frames of the training folds, no others
        return pred(model, test)
    res = E.cross_validate(clips, fit_fn, pred_fn)
    assert len(seen) == 5 and res['n_sequences'] == 15
    # what a fold's model predicts does not depend on the features of that fold: scramble them, refit, same output
    models = {}
    for k in sorted(set(clips.folds.tolist())):
        tr = clips.subset(clips.folds != k); te = clips.subset(clips.folds == k)
        other = S.SequenceSet([replace(s, x=s.x[::-1] * 3 + 7) if s.fold == k else s for s in clips.sequences],
                              clips.classes, clips.fps, clips.backbone)
        p1 = predict_proba(fit_frames(tr, FAST), te)
        p2 = predict_proba(fit_frames(other.subset(other.folds != k), FAST), te)
        np.testing.assert_array_equal(p1, p2)
        models[k] = p1
    # and a model trained with a test fold inside it does differ (the check above can fail)
    leak = fit_frames(clips, FAST)
    assert any(not np.array_equal(predict_proba(leak, clips.subset(clips.folds == k)), p) for k, p in models.items())


def test_sequences_are_predicted_one_by_one(clips):
    fm = fit_frames(clips.subset(clips.folds != 1), FAST)
    te = clips.subset(clips.folds == 1)
    together = predict_proba(fm, te)
    alone = np.concatenate([predict_proba(fm, [s.x]) for s in te.sequences])
    np.testing.assert_allclose(together, alone)                  # windows never reach into a neighbouring sequence
    assert together.shape == (3, 3) and np.allclose(together.sum(1), 1)
    s = te.sequences[0]
    np.testing.assert_allclose(together[0], sequence_proba(predict_frames_proba(fm, s.x)))


def test_repeated_frames_add_nothing(clips):
    "A frozen tail, every frame shown twice, a stretch without a mouse (carried forward): the same sequence probabilities."
    fm = fit_frames(clips.subset(clips.folds != 2), FAST)
    for s in clips.subset(clips.folds == 2).sequences:
        x = s.x; p = predict_proba(fm, [x])[0]
        frozen = np.concatenate([x, np.repeat(x[-1:], 40, 0)])
        twice = np.repeat(x, 2, 0)
        gap = np.concatenate([x[:2], np.repeat(x[1:2], 5, 0), x[2:]])
        for y in (frozen, twice, gap):
            np.testing.assert_allclose(predict_proba(fm, [y])[0], p, rtol=1e-6)
        bad = frozen.copy(); bad[len(x) + 5] = np.nan                   # rows named as given, repeats or not
        with pytest.raises(FrameModelError, match=f'first: {len(x) + 5}$'): predict_frames_proba(fm, bad)
        pf = predict_frames_proba(fm, frozen)
        np.testing.assert_allclose(pf[len(x):], np.repeat(pf[len(x) - 1:len(x)], 40, 0))   # a repeat: the frame it repeats
    assert repeated_frames(np.array([[1, 2], [1, 2], [1, 3], [1, 3]])).tolist() == [False, True, False, True]
    keep = replace(FAST, repeats='keep')
    fk = fit_frames(clips.subset(clips.folds != 2), keep)
    x = clips.subset(clips.folds == 2).sequences[0].x
    assert not np.allclose(predict_proba(fk, [np.concatenate([x, np.repeat(x[-1:], 40, 0)])]), predict_proba(fk, [x]))


def test_model_refuses_other_features(clips):
    fm = fit_frames(clips, FAST)
    for other in [replace(clips, fps=15.0), replace(clips, backbone='efficientnet_lite0')]:
        with pytest.raises(FrameModelError, match='do not match'): predict_proba(fm, other)
    with pytest.raises(FrameModelError, match=r'\(T, 13\)'): predict_frames_proba(fm, np.ones((10, 12)))
    with pytest.raises(FrameModelError, match='2 classes'): fit_frames(clips.subset(np.array(clips.y) == 0), FAST)
    part = clips.subset(np.array(clips.y) != 2)                   # 'walk' absent from training
    fp = fit_frames(part, FAST)
    p = predict_proba(fp, clips)
    assert p.shape == (15, 3) and (p.argmax(1) != 2).all()


@pytest.mark.parametrize('model', ['hgb', 'extratrees'])
def test_model_file_round_trip(clips, tmp_path, model):
    cfg = replace(FAST, model=model, max_iter=20, windows_s=(0.5, 2.0), seed=3)
    fm = fit_frames(clips, cfg, columns=POSTURE_COLUMNS, scheme='coarse')
    path = save_frame_model(fm, tmp_path/'m'/'model.skops')
    assert sorted(p.name for p in path.parent.iterdir()) == ['model.skops'] and is_frame_model(path)
    back = load_frame_model(path)
    for a in ('kind', 'classes', 'backbone', 'fps', 'feature_dim', 'columns', 'scheme', 'config', 'history'):
        assert getattr(back, a) == getattr(fm, a), a
    assert back.kind == 'frames' and back.backbone == 'posture' and back.fps == 5.0 and back.columns == list(POSTURE_COLUMNS)
    assert back.feature_columns[:14] == list(POSTURE_COLUMNS) + ['speed_mean_0.5s']
    np.testing.assert_array_equal(predict_proba(back, clips), predict_proba(fm, clips))
    x = np.concatenate([s.x for s in clips.sequences])
    np.testing.assert_array_equal(predict_frames_proba(back, x), predict_frames_proba(fm, x))


class Foreign:
    def __init__(self): self.a = 1


def test_model_file_refusals(clips, tmp_path):
    import skops.io as sio, torch
    from mousebehav import lstm as L
    with pytest.raises(FrameModelError, match='no such model file'): load_frame_model(tmp_path/'none.skops')
    (tmp_path/'labels.csv').write_text('video,start_frame\n')
    with pytest.raises(FrameModelError, match='not a mousebehav frame model'): load_frame_model(tmp_path/'labels.csv')
    tm = L.fit(clips, 'paper', epochs=1, hidden=4, embed=4, val_fraction=0.0)          # the other model kind's file
    L.save_model(tm, tmp_path/'lstm.pt')
    with pytest.raises(FrameModelError, match='not a mousebehav frame model'): load_frame_model(tmp_path/'lstm.pt')
    assert not is_frame_model(tmp_path/'lstm.pt')
    fm = fit_frames(clips, FAST)
    good = save_frame_model(fm, tmp_path/'good.skops')
    assert load_frame_model(good).columns is None and load_frame_model(good).scheme is None   # names not known: kept as None
    cut = tmp_path/'cut.skops'; cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])   # a truncated copy
    with pytest.raises(FrameModelError, match='not a mousebehav frame model'): load_frame_model(cut)
    sio.dump({'format': 'something-else', 'estimator': fm.estimator}, tmp_path/'other.skops')      # a skops file, no header
    with pytest.raises(FrameModelError, match="no 'mousebehav-frame-model' header"): load_frame_model(tmp_path/'other.skops')
    for odd in (collections.Counter(a=1), Foreign()):                                           # types never in a frame model
        sio.dump({'format': 'mousebehav-frame-model', 'kind': 'frames', 'estimator': odd}, tmp_path/'odd.skops')
        with pytest.raises(FrameModelError, match='never holds.*not loaded'): load_frame_model(tmp_path/'odd.skops')
    blob = sio.load(good, trusted=sio.get_untrusted_types(file=good))                           # a header that lies
    sio.dump(blob | {'feature_dim': 12}, tmp_path/'lie.skops')
    with pytest.raises(FrameModelError, match='does not fit the header'): load_frame_model(tmp_path/'lie.skops')
    (tmp_path/'blocked').write_text('a file where a folder should be')
    with pytest.raises(OSError): save_frame_model(fm, tmp_path/'blocked'/'m.skops')
    unfitted = replace(fm, estimator=type(fm.estimator)())
    with pytest.raises(FrameModelError, match='not fitted'): save_frame_model(unfitted, tmp_path/'u.skops')
    assert not list(tmp_path.glob('*.partial')) and not (tmp_path/'u.skops').exists()
