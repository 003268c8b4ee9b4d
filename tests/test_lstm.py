"""`mousebehav train` and `mousebehav bench train` on tiny synthetic feature stores (same HDF5 layout as mousebehav.features)."""
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mousebehav.cli import main
from mousebehav.lstm import load_model, check_features, predict_proba, ModelMismatchError
from mousebehav.sequences import stores_for, read_labels, build_sequences

DIM, FPS = 16, 30.0
BEHAVIOURS = ['locomote', 'face_groom', 'wall_rear', 'itch']   # one per seed class


def write_store(path: Path, video: str, n: int, crop: str = '', backbone: str = 'toy', seed: int = 0, stride: int = 1):
    "A feature store like mousebehav.features writes: features/frame_index/bbox/detected + attrs."
    rng = np.random.default_rng(seed)
    fi = np.arange(0, n, stride)
    # frames of bout k (30 frames each) carry class k % 4's signal
    centres = np.random.default_rng(99).normal(size=(4, DIM))
    x = rng.normal(size=(len(fi), DIM)) + 1.5 * centres[(fi // 30) % 4]
    with h5py.File(path, 'w') as f:
        f['features'] = x.astype(np.float32)
        f['frame_index'] = fi.astype(np.int64)
        f['bbox'] = np.zeros((len(fi), 4), np.int32)
        f['detected'] = np.ones(len(fi), bool)
        f.attrs.update(dict(backbone=backbone, feature_dim=DIM, video=f'/videos/{video}', video_name=video, crop=crop,
                            video_fps=FPS, video_frame_count=n, stride=stride, complete=True, n_done=len(fi)))
    return path


@pytest.fixture
def project(tmp_path):
    stores = [write_store(tmp_path/'a.h5', 'a.mp4', 480, seed=1),
              write_store(tmp_path/'b_left.h5', 'b.mp4', 480, crop='0,0,100,100', seed=2),
              write_store(tmp_path/'b_right.h5', 'b.mp4', 480, crop='100,0,200,100', seed=3)]
    rows = []
    for v, crop in [('a.mp4', None), ('b.mp4', (0, 0, 100, 100)), ('b.mp4', (100, 0, 200, 100))]:
        for k in range(16):
            c = crop or (np.nan,) * 4
            rows.append(dict(video=v, start_frame=30 * k, end_frame=30 * k + 30, behavior=BEHAVIOURS[k % 4], fold=k % 3,
                             crop_x0=c[0], crop_y0=c[1], crop_x1=c[2], crop_y1=c[3]))
    labels = tmp_path/'labels.csv'
    pd.DataFrame(rows).to_csv(labels, index=False)
    return tmp_path, [str(s) for s in stores], labels


def test_stores_matched_by_video_and_crop(project):
    tmp, stores, labels = project
    sm = stores_for(stores)
    assert set(sm) == {('a.mp4', None), ('b.mp4', '0,0,100,100'), ('b.mp4', '100,0,200,100')}
    ss = build_sequences(read_labels(labels), sm, 'seed')
    assert len(ss) == 48 and ss.classes == ['crawling', 'grooming', 'rearing', 'scratching'] and ss.fps == FPS
    assert ss.backbone == 'toy' and set(ss.lengths) == {30}


def test_train_cli_writes_a_usable_model(project, capsys):
    tmp, stores, labels = project
    out = tmp/'model.pt'
    rc = main(['train', *stores, '--labels', str(labels), '--out', str(out), '--epochs', '12', '--quiet', '--threads', '1'])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert '48 sequences' in printed and 'test accuracy' in printed and out.exists()
    tm = load_model(out)
    assert tm.classes == ['crawling', 'grooming', 'rearing', 'scratching'] and tm.backbone == 'toy'
    assert tm.fps == FPS and tm.feature_dim == DIM and 'test_acc' in tm.history
    assert tm.history['test_acc'] >= 0.7, tm.history          # the classes are easy to tell apart
    ss = build_sequences(read_labels(labels), stores_for(stores), 'seed')
    assert (predict_proba(tm, ss).argmax(1) == ss.y).mean() >= 0.7
    with pytest.raises(ModelMismatchError, match="backbone 'efficientnet_lite0'"):
        check_features(tm, 'efficientnet_lite0', DIM, FPS)


def test_train_cli_reports_every_bad_row(project, capsys):
    tmp, stores, labels = project
    t = pd.read_csv(labels)
    t.loc[0, 'video'] = 'missing.mp4'
    t.loc[1, 'end_frame'] = 10_000
    t.loc[2, 'behavior'] = 'moonwalk'
    t.loc[3, 'end_frame'] = t.loc[3, 'start_frame']
    bad = tmp/'bad.csv'; t.to_csv(bad, index=False)
    rc = main(['train', *stores, '--labels', str(bad), '--out', str(tmp/'m.pt'), '--epochs', '1', '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp/'m.pt').exists()
    for n, what in [(2, "unknown video 'missing.mp4'"), (3, 'frames past the end'), (4, "unknown behavior 'moonwalk'"),
                    (5, 'end_frame 90 <= start_frame 90')]:
        assert f"bad.csv row {n}: {what}" in err, err


def test_train_cli_refuses_mixed_backbones(project, capsys):
    tmp, stores, labels = project
    write_store(tmp/'b_right.h5', 'b.mp4', 480, crop='100,0,200,100', backbone='other')
    rc = main(['train', *stores, '--labels', str(labels), '--out', str(tmp/'m.pt'), '--epochs', '1', '--quiet'])
    assert rc == 2 and 'different backbones' in capsys.readouterr().err


def test_bench_train_small(tmp_path, capsys):
    out = tmp_path/'bench.json'
    rc = main(['bench', 'train', '--frames', '12', '--sequences', '8', '--epochs', '2', '--dim', '32',
               '--frames-10hz', '6', '--matmul-size', '256', '--threads', '1', '--json', str(out)])
    assert rc == 0
    r = json.loads(out.read_text())['runs']
    assert [x['frames'] for x in r] == [12, 6] and all(x['extrapolated'] and x['ratio'] > 0 for x in r)
    assert r[0]['flop_bound_seconds_full'] > r[1]['flop_bound_seconds_full']
    assert 'extrapolated' in capsys.readouterr().out


def test_evaluate_cli_keeps_cropped_rows(project, tmp_path, capsys):
    tmp, stores, labels = project
    assert main(['train', *stores, '--labels', str(labels), '--out', str(tmp_path/'m.pt'), '--epochs', '3']) == 0
    assert main(['evaluate', str(tmp_path/'m.pt'), *stores, '--labels', str(labels), '--out', str(tmp_path/'ev')]) == 0
    assert '48 sequences: accuracy' in capsys.readouterr().out          # all rows, the two cropped panels' too
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert m['n_sequences'] == 48 and m['skipped_rows'] == 0
