"""Command-line contract of mousebehav.evaluate: bench classify (reduced), predict, evaluate; metrics and CV."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[1].parent/'shared'/'data'
if 'MOUSEBEHAV_DATA_DIR' not in os.environ and DATA.exists(): os.environ['MOUSEBEHAV_DATA_DIR'] = str(DATA)

from mousebehav.evaluate import metrics, cross_validate, baseline_logreg, bouts, stabilise
from mousebehav.cli import main

REQUIRED = ['accuracy', 'macro_f1', 'per_class', 'confusion', 'classes', 'n_sequences', 'folds', 'baselines']


def test_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, confusion_matrix
    rng = np.random.default_rng(3)
    for _ in range(5):
        yt, yp = rng.integers(0, 5, 60), rng.integers(0, 5, 60)
        m = metrics(yt, yp, list('abcde'))
        assert m['accuracy'] == pytest.approx(accuracy_score(yt, yp))
        assert m['macro_f1'] == pytest.approx(f1_score(yt, yp, average='macro', labels=sorted(set(yt))))
        p, r, f, s = precision_recall_fscore_support(yt, yp, labels=range(5), zero_division=0)
        assert [m['per_class'][c]['recall'] for c in 'abcde'] == pytest.approx(r.tolist())
        assert [m['per_class'][c]['precision'] for c in 'abcde'] == pytest.approx(p.tolist())
        assert m['confusion'] == confusion_matrix(yt, yp, labels=range(5)).tolist()


def test_cv_folds_are_disjoint():
    from mousebehav.sequences import synthetic_set
    ss = synthetic_set(30, length=8, dim=6, n_classes=3, n_folds=5, seed=2)
    fit, pred = baseline_logreg(); calls = []
    def fit_fn(train): calls.append([s.video for s in train.sequences]); return fit(train)
    def pred_fn(model, test):
        assert not set(calls[-1]) & {s.video for s in test.sequences}
        assert len({s.fold for s in test.sequences}) == 1
        return pred(model, test)
    res = cross_validate(ss, fit_fn, pred_fn)
    assert [f['fold'] for f in res['folds']] == [0, 1, 2, 3, 4] and len(calls) == 5
    assert sum(f['n_test'] for f in res['folds']) == 30 == res['n_sequences']
    assert all(f['n_train'] + f['n_test'] == 30 for f in res['folds'])


def test_cv_keeps_frame_predictions():
    "A predict_fn that also gives every test frame's probabilities: cross_validate keeps them, each with its sequence's fold."
    from mousebehav.sequences import synthetic_set
    from mousebehav.evaluate import EvaluationError
    ss = synthetic_set(20, length=(3, 9), dim=4, n_classes=2, n_folds=4, seed=1)
    fit, pred = baseline_logreg()
    def frames_of(test, off=0):                    # a frame's "probabilities": made from its sequence's fold and length
        return [np.tile([s.fold / 10, 1 - s.fold / 10], (len(s.x) + off, 1)) for s in test.sequences]
    res = cross_validate(ss, fit, lambda m, test: (pred(m, test), frames_of(test)))
    fp = res['frame_predictions']
    assert [r['fold'] for r in fp] == [r['fold'] for r in res['predictions']] == [int(s.fold) for s in ss.sequences]
    assert [len(r['p']) for r in fp] == [len(s.x) for s in ss.sequences]
    assert all(np.allclose(r['p'], [[r['fold'] / 10, 1 - r['fold'] / 10]]) for r in fp)
    assert [r['true'] for r in fp] == [r['true'] for r in res['predictions']]
    plain = cross_validate(ss, fit, pred)
    assert 'frame_predictions' not in plain and plain['predictions'] == res['predictions']
    with pytest.raises(EvaluationError, match='per-frame probabilities of shape'):
        cross_validate(ss, fit, lambda m, test: (pred(m, test), frames_of(test, off=1)))
    with pytest.raises(EvaluationError, match='not finite'):
        cross_validate(ss, fit, lambda m, test: (pred(m, test), [q * np.nan for q in frames_of(test)]))


def test_stabilise_and_bouts():
    p = np.tile([0.9, 0.1], (30, 1)); p[10] = [0.2, 0.8]; p[20:] = [0.1, 0.9]
    lab = stabilise(p, 0.6, 3)
    assert lab[:22].tolist() == [0] * 22 and lab[22:].tolist() == [1] * 8
    b = bouts(np.array(['a', 'b'])[p.argmax(1)], p, fps=10, classes=['a', 'b'])
    assert b.start_frame.tolist() == [0, 10, 11, 20] and b.end_frame.tolist() == [10, 11, 20, 30]
    assert b.duration.sum() == pytest.approx(3.0)


@pytest.fixture(scope='module')
def bench_run(tmp_path_factory):
    import contextlib, io
    out = tmp_path_factory.mktemp('bench'); printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(['bench', 'classify', '--dataset', 'bsoid-clips', '--classes', 'coarse', '--out', str(out/'run'),
                   '--epochs', '5', '--limit', '10', '--seeds', '3', '--save-model', str(out/'model.skops'), '--quiet'])
    assert rc == 0
    (out/'stdout.txt').write_text(printed.getvalue())
    return out


def test_bench_classify_prints_its_calibration(bench_run):
    "The command prints the headline's held-out calibration (per frame for the frame model) with metrics.json's figures."
    c = json.loads((bench_run/'run'/'metrics.json').read_text())['calibration']
    assert c['headline'] == 'frames'
    f = c['frames']
    line = next(l for l in (bench_run/'stdout.txt').read_text().splitlines() if l.startswith('calibration ('))
    assert line.startswith('calibration (per frame, held out)')
    assert f"ECE {f['ece_before']:.3f} → {f['ece_after']:.3f}" in line and f"precision {f['precision']:.3f}" in line


def test_bench_classify_reduced(bench_run):
    m = json.loads((bench_run/'run'/'metrics.json').read_text())
    for k in REQUIRED: assert k in m, k
    for b in ['logreg', 'paper', 'trees', 'few']:
        for k in ['accuracy', 'macro_f1', 'per_class', 'confusion', 'folds', 'seeds_run']: assert k in m['baselines'][b]
    # the headline is the default model (frame model on posture and motion), first seed; every seed and mean ± sd are kept
    assert (m['model'], m['model_kind'], m['backbone']) == ('frames', 'frames', 'posture+motion')
    assert m['seeds_run'] == 3 and m['seeds']['seed'] == [0, 1, 2] and m['seeds']['accuracy'][0] == m['accuracy']
    assert m['seeds']['mean']['accuracy'] == pytest.approx(np.mean(m['seeds']['accuracy']))
    assert m['seeds']['sd']['macro_f1'] == pytest.approx(np.std(m['seeds']['macro_f1'], ddof=1))
    assert m['baselines']['trees']['seeds_run'] == 3 and m['baselines']['logreg']['seeds_run'] == 1
    assert m['baselines']['paper']['seeds_run'] == 1 and m['baselines']['few']['seeds_run'] == 3   # the default LSTM: --seeds
    assert m['majority_rate'] == max(d['support'] for d in m['per_class'].values()) / m['n_sequences']
    assert m['accuracy'] >= m['majority_rate'] and m['seeds']['mean']['accuracy'] >= m['majority_rate']
    assert m['n_sequences'] == 10 and len(m['folds']) == 5
    assert [f['fold'] for f in m['folds']] == [f['fold'] for f in m['baselines']['logreg']['folds']]
    C = len(m['classes']); assert np.array(m['confusion']).shape == (C, C) and np.sum(m['confusion']) == 10
    assert 0 <= m['accuracy'] <= 1 and (bench_run/'run'/'confusion.png').stat().st_size > 1000
    assert not list((bench_run/'run').glob('.*partial*'))


def test_bench_classify_calibration(bench_run):
    "bench classify reports the headline model's held-out calibration and draws its reliability diagram."
    m = json.loads((bench_run/'run'/'metrics.json').read_text())
    c = m['calibration']
    assert c['n_sequences'] == m['n_sequences'] == 10 and c['classes'] == m['classes']; C = len(c['classes'])
    # ECE before calibration, computed here from the held-out predictions (10 equal-width bins of the top probability)
    P = np.array([r['p'] for r in m['predictions']]); y = np.array([m['classes'].index(r['true']) for r in m['predictions']])
    conf, ok = P.max(1), P.argmax(1) == y; b = np.minimum((conf * 10).astype(int), 9)
    want = sum(abs(ok[b == k].sum() - conf[b == k].sum()) for k in range(10)) / len(y)
    assert c['ece_before'] == pytest.approx(want)
    assert c['accuracy'] == pytest.approx(ok.mean())
    assert 0 <= c['ece_after'] <= 1 and 0 <= c['unsure'] <= 1 and 0 <= c['threshold'] <= 1 and c['temperature'] > 0
    assert set(c['temperatures']) == {str(f['fold']) for f in m['folds']}
    assert len(c['curve']['threshold']) == len(c['curve']['precision']) == len(c['curve']['coverage'])
    assert (bench_run/'run'/'calibration.png').stat().st_size > 1000
    # per frame, the headline: every held-out frame of the frame model, with its sequence's fold and class
    fp, f = m['frame_predictions'], c['frames']
    assert c['headline'] == 'frames' and [r['fold'] for r in fp] == [r['fold'] for r in m['predictions']]
    assert [r['true'] for r in fp] == [r['true'] for r in m['predictions']]
    Pf = np.concatenate([np.array(r['p']) for r in fp]); yf = np.repeat(y, [len(r['p']) for r in fp])
    assert f['n_frames'] == len(Pf) == len(yf) and f['n_sequences'] == 10 and Pf.shape[1] == C
    # the sequence's probabilities are the softmax of its frames' mean log-probability (frame_model.sequence_proba)
    from mousebehav.frame_model import sequence_proba
    assert np.allclose([sequence_proba(r['p']) for r in fp], P, atol=2e-3)
    cf, okf = Pf.max(1), Pf.argmax(1) == yf; bf = np.minimum((cf * 10).astype(int), 9)
    assert f['ece_before'] == pytest.approx(sum(abs(okf[bf == k].sum() - cf[bf == k].sum()) for k in range(10)) / len(yf))
    assert f['accuracy'] == pytest.approx(okf.mean()) and f['temperature'] > 0 and 0 <= f['unsure'] <= 1
    assert f['ece_after_ci95'][0] <= f['ece_after'] <= f['ece_after_ci95'][1]
    assert set(f['thresholds']) == set(f['temperatures']) == {str(r['fold']) for r in m['folds']}


def test_predict_csvs(bench_run, tmp_path):
    from mousebehav.data import fetch_file
    from mousebehav.video import probe
    video = fetch_file('bsoid-clips', 'group2_example_1.avi'); n = probe(video).frame_count
    out = tmp_path/'eth.csv'
    rc = main(['predict', str(bench_run/'model.skops'), str(video), '--out', str(out),
               '--features-dir', str(bench_run/'run'/'features'), '--threshold', '0.5', '--min-frames', '2'])
    assert rc == 0
    e = pd.read_csv(out); b = pd.read_csv(tmp_path/'eth_bouts.csv')
    m = json.loads((bench_run/'run'/'metrics.json').read_text())
    assert list(e.columns) == ['frame', 'time_s', 'label', *[f'p_{c}' for c in m['classes']]]
    assert e.frame.tolist() == list(range(n))
    assert np.allclose(e.filter(like='p_').sum(axis=1), 1, atol=1e-3)
    assert set(e.label) <= set(m['classes'])
    assert list(b.columns)[:5] == ['behavior', 'start', 'end', 'duration', 'mean_probability']
    assert b.start_frame.iloc[0] == 0 and b.end_frame.iloc[-1] == n
    assert (b.start_frame.values[1:] == b.end_frame.values[:-1]).all()
    assert b.duration.sum() == pytest.approx(n / probe(video).fps, rel=1e-3)


def test_predict_refuses_bad_crop(bench_run, tmp_path, capsys):
    from mousebehav.data import fetch_file
    video = fetch_file('bsoid-clips', 'group2_example_1.avi')
    rc = main(['predict', str(bench_run/'model.skops'), str(video), '--out', str(tmp_path/'x.csv'), '--crop', '0,0,5000,10'])
    assert rc == 2 and not (tmp_path/'x.csv').exists()
    assert 'group2_example_1.avi' in capsys.readouterr().err


def test_bench_classify_refuses_a_bad_model_kind_and_seeds(tmp_path, capsys):
    with pytest.raises(SystemExit): main(['bench', 'classify', '--model', 'svm', '--out', str(tmp_path)])
    assert main(['bench', 'classify', '--seeds', '0', '--out', str(tmp_path/'r')]) == 2
    assert 'seeds must be >= 1' in capsys.readouterr().err and not (tmp_path/'r').exists()


def test_evaluate_cli(bench_run, tmp_path):
    from mousebehav.data import fetch
    stores = sorted((bench_run/'run'/'features').glob('*.h5'))   # the combined stores (their parts lie in posture/, motion/)
    assert stores
    rc = main(['evaluate', str(bench_run/'model.skops'), *map(str, stores),
               '--labels', str(fetch('bsoid-clips')/'labels.csv'), '--out', str(tmp_path/'ev')])
    assert rc == 0
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert m['n_sequences'] == len(stores) and 0 <= m['accuracy'] <= 1


def test_predict_refuses_a_video_without_a_mouse(tmp_path, field_cases, capsys):
    "No mouse in any frame (a one-frame clip: nothing to subtract; an arena corner): an error naming the video, no CSV."
    from mousebehav.data import fetch_file
    of = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
    for args in ([str(field_cases/'one.mp4')], [str(of), '--crop', '0,0,30,30']):
        out = tmp_path/'eth.csv'
        assert main(['predict', *args, '--out', str(out), '--features-dir', str(tmp_path/'f')]) == 2
        err = capsys.readouterr().err
        assert 'no mouse was found in any of its' in err and Path(args[0]).name in err and 'Traceback' not in err
        assert not out.exists() and not (tmp_path/'eth_bouts.csv').exists()
        assert main(['extract', *args, '--backbone', 'posture', '--out', str(tmp_path/'x'), '--quiet']) == 0   # a store, with a warning
        err = capsys.readouterr().err
        assert 'mousebehav: warning:' in err and 'a mouse was found in none of its' in err, err
