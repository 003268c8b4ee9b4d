"""Field cases of the model stages: caches keyed by content, numbers that are not numbers, label rows that cannot be
scored, BORIS exports as labels, and the ethogram's real frame times."""
import json, os, shutil
from fractions import Fraction
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mousebehav.cli import main
from mousebehav.data import fetch, fetch_file
from mousebehav.video import probe, iter_frames, frame_times

CLIPS = [f'group{g}_example_{e}.avi' for g in (2, 3, 6, 7, 11, 14) for e in (1, 2)]  # grooming, rearing, crawling


def csv_probs(path) -> np.ndarray:
    return pd.read_csv(path).filter(like='p_').values


def same_size_videos(folder: Path, n: int = 12) -> tuple[Path, Path]:
    """Two uncompressed AVIs of the same size, frame count and frame rate (5 fps) but other frames: a file that is
    replaced in place by one of them keeps its name, size and frame count."""
    src = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, start in (('a.avi', 0), ('b.avi', 1200)):
        w = cv2.VideoWriter(str(folder/name), 0, 5.0, (160, 120))   # fourcc 0: raw frames, size fixed by the geometry
        for _, f in iter_frames(src, start=start, stop=start + n): w.write(cv2.resize(f, (160, 120)))
        w.release(); out.append(folder/name)
    assert out[0].stat().st_size == out[1].stat().st_size and out[0].read_bytes() != out[1].read_bytes()
    return tuple(out)


def replace_in_place(path: Path, by: Path):
    "Overwrite `path` with the bytes of `by`, keeping `path`'s modification time."
    st = path.stat()
    path.write_bytes(by.read_bytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope='module')
def clips_model(tmp_path_factory):
    "A small LSTM trained with `mousebehav train` on posture stores of 12 B-SOiD clips (5 fps)."
    d = tmp_path_factory.mktemp('clips')
    folder = fetch('bsoid-clips')
    assert main(['extract', *[str(folder/c) for c in CLIPS], '--backbone', 'posture', '--out', str(d/'stores'), '--quiet']) == 0
    lab = pd.read_csv(folder/'labels.csv'); lab = lab[lab.video.isin(CLIPS)]
    lab.to_csv(d/'labels.csv', index=False)
    stores = sorted(map(str, (d/'stores').glob('*.h5')))
    assert main(['train', *stores, '--labels', str(d/'labels.csv'), '--out', str(d/'model.pt'), '--epochs', '8',
                 '--test-fraction', '0', '--quiet', '--threads', '1']) == 0
    return d/'model.pt', folder


def predict(model, video, out, fdir) -> np.ndarray:
    assert main(['predict', str(model), str(video), '--out', str(out), '--features-dir', str(fdir)]) == 0
    return csv_probs(out)


# ---- 1. two videos with one file name, a video replaced in place: the feature cache follows the content

def test_predict_two_sessions_cam1(clips_model, tmp_path):
    model, folder = clips_model
    s1, s2 = tmp_path/'session1'/'cam1.avi', tmp_path/'session2'/'cam1.avi'
    for s, c in ((s1, 'group2_example_3.avi'), (s2, 'group3_example_3.avi')):
        s.parent.mkdir(); shutil.copyfile(folder/c, s)
    cache = tmp_path/'cache'
    p1 = predict(model, s1, tmp_path/'e1.csv', cache)
    p2 = predict(model, s2, tmp_path/'e2.csv', cache)
    ref2 = predict(model, s2, tmp_path/'ref2.csv', tmp_path/'fresh')        # session 2 alone, empty cache
    assert len(p2) == probe(s2).frame_count and np.array_equal(p2, ref2)
    assert not np.allclose(p1[0], p2[0])
    assert len(list(cache.rglob('cam1__*.h5'))) == 2                        # one cache entry per content
    assert np.array_equal(predict(model, s1, tmp_path/'e1b.csv', cache), p1)  # and both stay usable


def test_predict_video_replaced_in_place(clips_model, tmp_path):
    model, folder = clips_model
    v = tmp_path/'cam1.avi'; shutil.copyfile(folder/'group2_example_3.avi', v)
    cache = tmp_path/'cache'
    before = predict(model, v, tmp_path/'e.csv', cache)
    replace_in_place(v, folder/'group11_example_3.avi')
    after = predict(model, v, tmp_path/'e2.csv', cache)
    ref = predict(model, v, tmp_path/'ref.csv', tmp_path/'fresh')
    assert np.array_equal(after, ref) and len(after) == probe(v).frame_count
    assert before.shape != after.shape or not np.allclose(before, after)


def test_predict_same_size_video_replaced_in_place(clips_model, tmp_path):
    "Same name, same size, same frame count, same modification time: only the content tells them apart."
    model, _ = clips_model
    a, b = same_size_videos(tmp_path/'src')
    v = tmp_path/'cam1.avi'; shutil.copyfile(a, v)
    cache = tmp_path/'cache'
    first = predict(model, v, tmp_path/'e.csv', cache)
    replace_in_place(v, b)
    again = predict(model, v, tmp_path/'e2.csv', cache)
    ref = predict(model, b, tmp_path/'ref.csv', tmp_path/'fresh')
    assert np.array_equal(again, ref) and not np.allclose(first, again)


def test_stale_cache_entry_is_rebuilt(tmp_path):
    "A store under the cache's name that was made from other content is rebuilt, not reused (posture stores too)."
    from mousebehav.evaluate import _cached_or_extract
    from mousebehav.features import features_path, load_features
    a, b = same_size_videos(tmp_path/'src')
    v = tmp_path/'cam1.avi'; shutil.copyfile(a, v)
    p = features_path(tmp_path/'cache', v, keyed=True)
    assert p.name.startswith('cam1__') and p != features_path(tmp_path/'cache', b, keyed=True)
    _cached_or_extract(p, v, 'posture', None, 1)
    old = load_features(p).features
    replace_in_place(v, b)
    assert _cached_or_extract(p, v, 'posture', None, 1) == p        # same path on purpose: the entry is stale
    fresh = _cached_or_extract(tmp_path/'fresh.h5', b, 'posture', None, 1)
    np.testing.assert_array_equal(load_features(p).features, load_features(fresh).features)
    assert not np.array_equal(old, load_features(p).features)


def test_extract_out_dir_refuses_other_content_with_the_same_name(tmp_path, capsys):
    a, b = same_size_videos(tmp_path/'src')
    s1, s2 = tmp_path/'session1'/'cam1.avi', tmp_path/'session2'/'cam1.avi'
    s1.parent.mkdir(); s2.parent.mkdir(); shutil.copyfile(a, s1); shutil.copyfile(b, s2)
    args = ['--out', str(tmp_path/'out'), '--quiet', '--segmentation', 'none', '--batch-size', '6']
    assert main(['extract', str(s1), *args]) == 0
    capsys.readouterr()
    assert main(['extract', str(s2), *args]) == 2          # same name, size and frame count, other frames
    err = capsys.readouterr().err
    assert 'cam1.h5' in err and 'video content' in err and 'same file name' in err
    replace_in_place(s1, b)                                  # session 1's file changed since its store was made
    assert main(['extract', str(s1), *args]) == 2
    assert 'video content' in capsys.readouterr().err


def test_extract_refuses_two_inputs_named_alike(tmp_path, capsys):
    "One command, two sessions' cam1.avi into one folder: refused before anything is written."
    a, b = same_size_videos(tmp_path/'src')
    s1, s2 = tmp_path/'session1'/'cam1.avi', tmp_path/'session2'/'cam1.avi'
    s1.parent.mkdir(); s2.parent.mkdir(); shutil.copyfile(a, s1); shutil.copyfile(b, s2)
    assert main(['extract', str(s1), str(s2), '--out', str(tmp_path/'out'), '--quiet', '--backbone', 'posture']) == 2
    assert 'cam1.h5' in capsys.readouterr().err and not (tmp_path/'out').exists()


def test_extract_resumes_only_the_same_content(tmp_path):
    from mousebehav.features import extract, load_features, FeatureError
    a, b = same_size_videos(tmp_path/'src')
    v = tmp_path/'cam1.avi'; shutil.copyfile(a, v)
    part = extract(v, tmp_path/'out', segmentation=None, batch_size=4, max_frames=4, progress=False)
    assert part.name == 'cam1.partial.h5'
    replace_in_place(v, b)
    with pytest.raises(FeatureError, match='unfinished store.*video content'):
        extract(v, tmp_path/'out', segmentation=None, batch_size=4, progress=False)
    replace_in_place(v, a)                                   # the same content again: resumed and finished
    done = load_features(extract(v, tmp_path/'out', segmentation=None, batch_size=4, progress=False))
    whole = load_features(extract(a, tmp_path/'whole', segmentation=None, batch_size=4, progress=False))
    np.testing.assert_array_equal(done.features, whole.features)


# ---- 4. numbers that are not numbers

DIM, FPS = 16, 30.0
BEHAVIOURS = ['locomote', 'face_groom', 'wall_rear', 'itch']   # one per seed class


def toy_store(path: Path, video: str, n: int = 480, seed: int = 0, frame_index=None, bbox=None, width=100, height=100):
    "A store in mousebehav.features' layout whose 30-frame bouts carry their class's signal."
    rng = np.random.default_rng(seed)
    fi = np.arange(n) if frame_index is None else np.asarray(frame_index)
    centres = np.random.default_rng(99).normal(size=(4, DIM))
    x = rng.normal(size=(len(fi), DIM)) + 1.5 * centres[(np.arange(len(fi)) // 30) % 4]
    with h5py.File(path, 'w') as f:
        f['features'] = x.astype(np.float32); f['frame_index'] = fi.astype(np.int64)
        f['bbox'] = np.tile([10, 10, 60, 50], (len(fi), 1)).astype(np.int32) if bbox is None else bbox
        f['detected'] = np.ones(len(fi), bool)
        f.attrs.update(dict(backbone='toy', feature_dim=DIM, video=f'/videos/{video}', video_name=video, crop='',
                            video_fps=FPS, video_frame_count=n, stride=1, complete=True, n_done=len(fi),
                            width=width, height=height))
    return path


def toy_labels(path: Path, videos, n_bouts: int = 16, extra=()) -> Path:
    rows = [dict(video=v, start_frame=30 * k, end_frame=30 * k + 30, behavior=BEHAVIOURS[k % 4], fold=k % 3)
            for v in videos for k in range(n_bouts)] + list(extra)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def toy(tmp_path):
    stores = [str(toy_store(tmp_path/'a.h5', 'a.mp4', seed=1)), str(toy_store(tmp_path/'b.h5', 'b.mp4', seed=2))]
    return tmp_path, stores, toy_labels(tmp_path/'labels.csv', ['a.mp4', 'b.mp4'])


def train(stores, labels, out, *extra) -> int:
    return main(['train', *map(str, stores), '--labels', str(labels), '--out', str(out), '--epochs', '3', '--quiet',
                 '--threads', '1', *extra])


def spoil(path, rows, value):
    with h5py.File(path, 'r+') as f:
        x = f['features'][:]; x[rows] = value; f['features'][...] = x


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_train_refuses_a_store_with_non_finite_rows(toy, capsys, value):
    tmp, stores, labels = toy
    spoil(stores[0], [40, 41, 42, 43, 44, 45, 46], value)
    assert train(stores, labels, tmp/'m.pt') == 2 and not (tmp/'m.pt').exists()
    err = capsys.readouterr().err
    assert 'a.h5' in err and '7 feature row(s)' in err and 'frames 40, 41, 42, 43, 44, … (7 rows)' in err, err


def test_evaluate_refuses_a_store_with_nan_rows(toy, capsys):
    tmp, stores, labels = toy
    assert train(stores, labels, tmp/'m.pt') == 0
    spoil(stores[1], [300], np.nan)
    assert main(['evaluate', str(tmp/'m.pt'), *stores, '--labels', str(labels), '--out', str(tmp/'ev')]) == 2
    err = capsys.readouterr().err
    assert 'b.h5' in err and 'frame 300' in err and not (tmp/'ev'/'metrics.json').exists()


def nan_model(tmp, good: Path) -> Path:
    blob = torch.load(good, weights_only=True)
    k = next(k for k, v in blob['state_dict'].items() if v.is_floating_point() and v.ndim == 2)
    blob['state_dict'][k][0, 0] = float('nan')
    torch.save(blob, tmp/'nan.pt')
    return tmp/'nan.pt'


def test_model_file_with_nan_weights_is_refused(toy, capsys):
    tmp, stores, labels = toy
    assert train(stores, labels, tmp/'m.pt') == 0
    bad = nan_model(tmp, tmp/'m.pt'); capsys.readouterr()
    assert main(['evaluate', str(bad), *stores, '--labels', str(labels), '--out', str(tmp/'ev')]) == 2
    err = capsys.readouterr().err
    assert 'nan.pt' in err and 'not finite' in err and not (tmp/'ev').exists()


def test_predict_refuses_a_model_with_nan_weights(clips_model, tmp_path, capsys):
    model, folder = clips_model
    bad = nan_model(tmp_path, model)
    assert main(['predict', str(bad), str(folder/'group2_example_3.avi'), '--out', str(tmp_path/'e.csv'),
                 '--features-dir', str(tmp_path/'f')]) == 2
    assert 'not finite' in capsys.readouterr().err and not (tmp_path/'e.csv').exists()


def test_save_model_never_writes_non_finite_weights(tmp_path):
    from mousebehav import lstm as L
    from mousebehav.sequences import synthetic_set
    tm = L.fit(synthetic_set(8, length=6, dim=4, n_classes=2), 'paper', epochs=1, hidden=4, embed=4)
    with torch.no_grad(): tm.model.out.bias[0] = float('inf')
    with pytest.raises(L.NonFiniteError, match='out.bias'): L.save_model(tm, tmp_path/'m.pt')
    assert not list(tmp_path.iterdir())


def test_fit_stops_when_the_loss_stops_being_a_number():
    "A learning rate so large that the weights overflow: training stops with an error, no model comes out."
    from mousebehav import lstm as L
    from mousebehav.sequences import synthetic_set
    ss = synthetic_set(8, length=6, dim=4, n_classes=2)
    with pytest.raises(L.NonFiniteError, match='training stopped in epoch .*no longer finite'):
        L.fit(ss, 'paper', epochs=3, hidden=4, embed=4, optimizer='adam', lr=1e30)
    ss.sequences[3].x[2, 1] = np.nan
    with pytest.raises(L.NonFiniteError, match=r'synthetic3.mp4 frames 0–5 \(frames 2\)'):
        L.fit(ss, 'paper', epochs=2, hidden=4, embed=4)


def test_scores_refuse_nan_probabilities():
    from mousebehav.evaluate import metrics, cross_validate, baseline_logreg, EvaluationError, ethogram_table
    from mousebehav.sequences import synthetic_set
    ss = synthetic_set(12, length=5, dim=3, n_classes=2, n_folds=3)
    fit, pred = baseline_logreg()
    def nan_pred(model, test):
        p = pred(model, test); p[1] = np.nan; return p
    with pytest.raises(EvaluationError, match=r'fold 0: 1 of 4 probability row\(s\) are not finite.*synthetic3.mp4 frames 0–4'):
        cross_validate(ss, fit, nan_pred)
    with pytest.raises(EvaluationError, match='not finite'):
        metrics([0, 1, 1], np.array([0.0, np.nan, 1.0]), ['a', 'b'])
    p = np.full((5, 2), 0.5); p[3] = np.inf
    with pytest.raises(EvaluationError, match='ethogram: 1 of 5.*: 3'):
        ethogram_table(p, ['a', 'b'], 30)


@pytest.mark.parametrize('broken, message', [
    (dict(frame_index=[*range(200), 199, *range(201, 480)]), 'not increasing at 1 row(s): frame 199'),
    (dict(frame_index=[*range(479), 600]), '1 row(s) past the end of the 480-frame video: frame 600'),
    (dict(frame_index=[-1, *range(1, 480)]), 'negative frame numbers'),
    (dict(bbox=np.tile([10, 10, 160, 50], (480, 1)).astype(np.int32)), 'box(es) outside the 100×100 frame'),
])
def test_load_features_refuses_broken_rows(tmp_path, broken, message):
    from mousebehav.features import load_features, FeatureError
    p = toy_store(tmp_path/'x.h5', 'x.mp4', **broken)
    with pytest.raises(FeatureError) as e: load_features(p)
    assert str(p) in str(e.value) and message in str(e.value), str(e.value)


# ---- 5. one label checker for train and evaluate; skipped rows counted and named

def test_evaluate_refuses_rows_past_the_end(toy, capsys):
    tmp, stores, labels = toy
    assert train(stores, labels, tmp/'m.pt') == 0
    past = toy_labels(tmp/'past.csv', ['a.mp4', 'b.mp4'],
                      extra=[dict(video='b.mp4', start_frame=470, end_frame=530, behavior='itch', fold=0)])
    assert train(stores, past, tmp/'m2.pt') == 2 and not (tmp/'m2.pt').exists()
    assert 'past.csv row 34' in capsys.readouterr().err
    assert main(['evaluate', str(tmp/'m.pt'), *stores, '--labels', str(past), '--out', str(tmp/'ev')]) == 2
    err = capsys.readouterr().err
    assert 'past.csv row 34' in err and 'past the end' in err and not (tmp/'ev').exists()


def test_evaluate_counts_and_names_rows_it_cannot_score(toy, capsys):
    tmp, stores, labels = toy
    # a model that knows three of the four seed classes (no scratching)
    three = toy_labels(tmp/'three.csv', ['a.mp4', 'b.mp4'])
    t = pd.read_csv(three); t[t.behavior != 'itch'].to_csv(three, index=False)
    assert train(stores, three, tmp/'m.pt') == 0
    extra = [dict(video='a.mp4', start_frame=0, end_frame=20, behavior='inactive', fold=0),    # no seed class
             dict(video='c.mp4', start_frame=0, end_frame=20, behavior='locomote', fold=0)]    # no store given
    table = toy_labels(tmp/'eval.csv', ['a.mp4', 'b.mp4'], extra=extra)
    capsys.readouterr()
    assert main(['evaluate', str(tmp/'m.pt'), *stores, '--labels', str(table), '--out', str(tmp/'ev')]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp/'ev'/'metrics.json').read_text())
    itch_rows = [r + 2 for r in range(32) if r % 4 == 3]          # spreadsheet rows of the 8 scratching bouts
    assert m['n_sequences'] == 24 and m['skipped_rows'] == 10
    assert sorted(s['row'] for s in m['skipped']) == itch_rows + [34, 35]
    assert {s['row']: s['video'] for s in m['skipped']}[35] == 'c.mp4'
    assert all(s['reason'] for s in m['skipped'])
    assert 'skipped_rows 10' in out and 'row 34: a.mp4, inactive' in out and 'row 35: c.mp4, locomote' in out


# ---- 6. BORIS exports as labels of train and evaluate

@pytest.fixture(scope='module')
def base_store(tmp_path_factory, field_cases):
    d = tmp_path_factory.mktemp('base')
    assert main(['extract', str(field_cases/'base.mp4'), '--backbone', 'posture', '--out', str(d), '--quiet']) == 0
    return d/'base.h5'


def test_train_and_evaluate_read_boris_exports(base_store, field_cases, tmp_path, capsys):
    m = tmp_path/'m.pt'
    assert main(['train', str(base_store), '--labels', str(field_cases/'boris_windows_paths.csv'), '--out', str(m),
                 '--epochs', '2', '--test-fraction', '0', '--quiet', '--threads', '1']) == 0
    assert '2 sequences' in capsys.readouterr().out
    two = str(field_cases/'boris_two_subjects_point_event.csv')
    assert main(['evaluate', str(m), str(base_store), '--labels', two, '--out', str(tmp_path/'ev')]) == 2
    err = capsys.readouterr().err
    assert 'mouse1' in err and 'mouse2' in err
    assert main(['evaluate', str(m), str(base_store), '--labels', two, '--subject', 'mouse1', '--out', str(tmp_path/'ev')]) == 0
    r = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    # locomote and rearing are the model's classes; face_groom (grooming) is not: skipped and named
    assert r['n_sequences'] == 2 and r['skipped_rows'] == 1 and r['skipped'][0]['behavior'] == 'face_groom'
    # an export whose FPS column (25) is not the video's rate (30): seconds become frames at the video's rate
    capsys.readouterr()
    assert main(['evaluate', str(m), str(base_store), '--labels', str(field_cases/'boris_fps25_video30.csv'),
                 '--out', str(tmp_path/'ev25')]) == 0
    assert 'says 25 fps' in capsys.readouterr().err                 # the labels' warning is not swallowed
    r = json.loads((tmp_path/'ev25'/'metrics.json').read_text())
    assert [(p['start'], p['end'], p['true']) for p in r['predictions']] == [(0, 30, 'crawling'), (60, 90, 'rearing')]


# ---- 2. the ethogram's time_s is each frame's real time

def vfr_video(path: Path) -> Path:
    "An MP4 whose frames are 150 ms and 250 ms apart in turn (variable frame rate), from a B-SOiD clip."
    import av
    frames = [cv2.resize(f, (320, 180)) for _, f in iter_frames(fetch_file('bsoid-clips', 'group2_example_1.avi'))]
    with av.open(str(path), 'w') as out:
        st = out.add_stream('mpeg4'); st.width, st.height, st.pix_fmt = 320, 180, 'yuv420p'
        st.codec_context.time_base = st.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format='bgr24'); vf.pts, vf.time_base = t, Fraction(1, 1000)
            for p in st.encode(vf): out.mux(p)
            t += 150 if i % 2 == 0 else 250
        for p in st.encode(): out.mux(p)
    return path


def test_ethogram_time_is_the_frames_real_time(tmp_path):
    from mousebehav import lstm as L
    from mousebehav.evaluate import predict_video, write_ethogram
    from mousebehav.posture import POSTURE_COLUMNS
    from mousebehav.sequences import synthetic_set
    v = vfr_video(tmp_path/'vfr.mp4'); info = probe(v)
    tm = L.fit(synthetic_set(8, length=6, dim=len(POSTURE_COLUMNS), n_classes=2, fps=info.fps, backbone='posture'),
               'paper', epochs=1, hidden=4, embed=4)
    tab = predict_video(tm, v, features_dir=tmp_path/'f')
    t = frame_times(v)
    assert len(tab) == info.frame_count == len(t)
    np.testing.assert_allclose(tab.time_s.values, t)
    np.testing.assert_allclose(np.diff(tab.time_s.values)[:4], [0.15, 0.25, 0.15, 0.25], atol=1e-3)
    e, b = write_ethogram(tab, tmp_path/'e.csv')
    np.testing.assert_allclose(pd.read_csv(e).time_s.values, t, atol=1e-6)
    bb = pd.read_csv(b)
    assert bb.start.iloc[0] == pytest.approx(t[0]) and bb.end.iloc[-1] == pytest.approx(t[-1] + np.median(np.diff(t)), abs=1e-6)
