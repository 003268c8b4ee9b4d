"""Long videos in chunks on several processes: chunked stores against unchunked ones, resuming a killed run chunk by
chunk, a chunk that cannot be decoded, the Dask path, and the `--backbone motion` / `posture+motion` wiring."""
import json, os, signal, subprocess, sys, time, warnings

import cv2
import h5py
import numpy as np
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch_file
from mousebehav.features import (CHUNK_S, MIN_CHUNK_S, OVERLAP_S, FeatureError, FeatureWarning, chunk_differences, extract,
                                 extract_many, features_path, load_features, plan_chunks, priming_windows)
from mousebehav.video import iter_frames, probe, write_video

N_OF = 2330   # frames of the open-field video (640x480, 30 fps, 78 s)


@pytest.fixture(scope='module')
def openfield():
    return str(fetch_file('dlc-openfield', 'm3v1mp4.mp4'))


@pytest.fixture(scope='module')
def runs(openfield, tmp_path_factory):
    "Posture and motion stores of the open-field video: unchunked on one process, and in three chunks on two processes."
    d = tmp_path_factory.mktemp('runs')
    out = {}
    for b in ('posture', 'motion'):
        out[b, 'serial'] = extract(openfield, d/b/'serial', backbone=b, workers=1, chunk_s=0, progress=False)
        out[b, 'chunked'] = extract(openfield, d/b/'chunked', backbone=b, workers=2, chunk_s=30, progress=False)
    return out


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    "60 s of the open-field video at 10 fps and 160x120 (600 frames): two chunks of 30 s in a moment."
    d = tmp_path_factory.mktemp('small')
    src = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
    frames = (cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for _, f in iter_frames(src, stop=600))
    return write_video(d/'of10.avi', frames, fps=10)


def damaged(video, path, frames):
    "A copy of the MJPG AVI `video` whose JPEG data of `frames` is zeroed: those frames no longer decode."
    b = bytearray(open(video, 'rb').read())
    soi = [i for i in range(len(b) - 2) if b[i] == 0xFF and b[i + 1] == 0xD8 and b[i + 2] == 0xFF]
    for k in frames: b[soi[k]:soi[k + 1] - 16] = bytes(soi[k + 1] - 16 - soi[k])
    path.write_bytes(bytes(b))
    return path


def test_plan_chunks():
    assert plan_chunks(1000, 30, 0) == [(0, 1000)] == plan_chunks(1000, 30, None)
    assert plan_chunks(1000, 30, CHUNK_S) == [(0, 1000)]                   # 33 s: shorter than 1.5 chunks
    p = plan_chunks(N_OF, 30, 30, 20)
    assert [a for a, _ in p] == [0, 780, 1560] and p[-1][1] == N_OF      # three chunks, starts on whole IMBS cycles
    p = plan_chunks(24 * 3600 * 30, 30, CHUNK_S, 160)                      # a day at 30 fps: 288 chunks of 5 min
    assert len(p) == 288 and all(a % 160 == 0 for a, _ in p) and all(b == c for (_, b), (c, _) in zip(p, p[1:]))
    with pytest.raises(FeatureError, match='too short'): plan_chunks(N_OF, 30, MIN_CHUNK_S - 1)


@pytest.mark.parametrize('backbone', ['posture', 'motion'])
def test_chunked_equals_unchunked(runs, backbone):
    S, C = load_features(runs[backbone, 'serial']), load_features(runs[backbone, 'chunked'])
    assert C.frame_index.tolist() == S.frame_index.tolist() == list(range(N_OF))
    assert json.loads(C.attrs['chunks']) == [[0, 780], [780, 1560], [1560, 2330]] and 'chunks' not in S.attrs
    over = int(C.attrs['chunk_overlap'])
    assert over == 320 and over >= OVERLAP_S * C.fps                         # 10 s in whole IMBS cycles (20 frames)
    assert priming_windows(C.attrs) == [(780, 780 + over), (1560, 1560 + over)]
    d = chunk_differences(S, C)
    assert [s for s, _ in d['seams']] == [780, 1560] and all(t is not None and t < s + over for s, t in d['seams']), d['seams']
    assert d['rows'] == 0 and d['identical_outside'], d                      # every seam settled: the unchunked store
    np.testing.assert_array_equal(C.features, S.features)
    np.testing.assert_array_equal(C.bbox, S.bbox)
    assert not list(runs[backbone, 'chunked'].parent.glob('*partial*')) and not list(runs[backbone, 'chunked'].parent.glob('*writing*'))


def test_chunks_of_a_looped_video_equal_unchunked(openfield, tmp_path):
    """The open field played three times (6990 frames; at 2330 and 4660 the mouse jumps back to where it started), in
    chunks of 30 s: the chunk from frame 5240 starts its segmenter at 4640, and is primed from frames 4640 … 6989, the
    first and the last of which show the mouse at the same place (the video's frames 2310 and 2329). Primed with the
    mouse in every frame, its background held the mouse there and the track locked onto a part of it, then onto the
    whole frame (880 rows differed); primed without what moves, every seam settles and the store is the unchunked one."""
    from mousebehav.features import repeat_video
    v = repeat_video(openfield, tmp_path/'x3.mp4', 3)
    S = load_features(extract(v, tmp_path/'serial', backbone='posture', workers=1, chunk_s=0, progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter('error', FeatureWarning)                    # a seam that does not settle warns: fail
        C = load_features(extract(v, tmp_path/'chunked', backbone='posture', workers=2, chunk_s=30, progress=False))
    starts = [a for a, _ in json.loads(C.attrs['chunks'])]
    assert 5240 in starts and int(C.attrs['chunk_lead']) == 600, starts    # the chunk whose lead begins 20 frames before the jump
    d = chunk_differences(S, C)
    assert all(t is not None for _, t in d['seams']), d['seams']
    assert d['identical_outside'] and d['rows'] == 0, (d['rows'], d['outside'][:10])
    np.testing.assert_array_equal(C.features, S.features)
    np.testing.assert_array_equal(C.bbox, S.bbox)


def test_cnn_crops_from_worker_processes_equal_unchunked(openfield, tmp_path):
    kw = dict(stride=8, segmentation=None, batch_size=16, progress=False)
    a = extract(openfield, tmp_path/'serial', workers=1, chunk_s=0, **kw)
    b = extract(openfield, tmp_path/'chunked', workers=2, chunk_s=30, **kw)
    A, B = load_features(a), load_features(b)
    assert len(json.loads(B.attrs['chunks'])) == 3 and B.frame_index.tolist() == list(range(0, N_OF, 8))
    np.testing.assert_array_equal(A.features, B.features)                  # same batches, bit for bit
    np.testing.assert_array_equal(A.bbox, B.bbox)
    with h5py.File(a, 'r') as fa, h5py.File(b, 'r') as fb:                 # the same layout for readers
        for k in fa: assert (fa[k].shape, fa[k].dtype, fa[k].chunks, fa[k].maxshape) == (fb[k].shape, fb[k].dtype, fb[k].chunks, fb[k].maxshape)


def test_killed_run_resumes_chunk_by_chunk(openfield, runs, tmp_path):
    out = tmp_path/'killed'
    code = (f"from mousebehav.features import extract\nif __name__ == '__main__': extract({openfield!r}, {str(out)!r}, "
            f"backbone='posture', workers=2, chunk_s=30, progress=False)")
    pr = subprocess.Popen([sys.executable, '-c', code], start_new_session=True)
    written = {}
    try:
        t = time.time()
        while pr.poll() is None and time.time() - t < 600:
            for p in out.glob('*.chunk*.partial.h5'):
                try:                                                        # (the worker holds it open for writing)
                    with h5py.File(p, 'r', locking=False) as f: written[p.name] = int(f.attrs['n_done'])
                except (OSError, KeyError): pass
            if any(512 <= n < 770 for n in written.values()): break        # a checkpoint inside a chunk
            time.sleep(0.2)
    finally:
        os.killpg(pr.pid, signal.SIGKILL); pr.wait()
    assert pr.returncode == -signal.SIGKILL and any(0 < n < 770 for n in written.values()), written
    assert not features_path(out, openfield).exists()
    with pytest.raises(FeatureError, match=r'chunk store\(s\)'): load_features(features_path(out, openfield))
    time.sleep(1)                                                           # the killed workers are gone
    p = extract(openfield, out, backbone='posture', workers=2, chunk_s=30, progress=False)
    F, U = load_features(p), load_features(runs['posture', 'chunked'])
    assert F.frame_index.tolist() == list(range(N_OF))                     # no frame lost, none twice
    np.testing.assert_array_equal(F.features, U.features)                  # the uninterrupted chunked run, exactly
    np.testing.assert_array_equal(F.bbox, U.bbox)
    assert not list(out.glob('*partial*'))


def test_max_frames_per_chunk_then_resume_cnn(small, tmp_path):
    kw = dict(stride=2, segmentation='imbs', batch_size=10, chunk_s=30, progress=False)
    part = extract(small, tmp_path/'a', workers=2, max_frames=40, **kw)
    assert part.name == 'of10.chunk0000.partial.h5' and not features_path(tmp_path/'a', small).exists()
    for k in range(2):
        with h5py.File(tmp_path/'a'/f'of10.chunk{k:04d}.partial.h5', 'r') as f:
            assert int(f.attrs['n_done']) == 40 and f['frame_index'][:].tolist() == list(range(300 * k, 300 * k + 80, 2))
    done = extract(small, tmp_path/'a', workers=2, **kw)
    ref = extract(small, tmp_path/'b', workers=1, **kw)
    A, B = load_features(done), load_features(ref)
    assert A.frame_index.tolist() == list(range(0, 600, 2))
    np.testing.assert_array_equal(A.features, B.features); np.testing.assert_array_equal(A.bbox, B.bbox)


@pytest.mark.parametrize('backbone,segmentation,workers', [('posture', 'imbs', 2), ('efficientnet_lite0', None, 2),
                                                            ('motion', 'imbs', 1)])
def test_a_chunk_that_does_not_decode(small, tmp_path, backbone, segmentation, workers):
    bad = damaged(small, tmp_path/'bad.avi', range(450, 455))             # frames 450–454, in the second chunk
    assert probe(bad).frame_count == 600                                   # counted, but they do not decode
    out = tmp_path/'out'
    with pytest.raises(FeatureError) as e:
        extract(bad, out, backbone=backbone, segmentation=segmentation, stride=1 if backbone in ('posture', 'motion') else 3,
                workers=workers, chunk_s=30, batch_size=10, progress=False)
    msg = str(e.value)
    assert str(bad) in msg and 'frames 300–599 (chunk 2 of 2)' in msg and '450' in msg, msg
    assert not features_path(out, bad).exists()                             # nothing that looks complete
    assert all(p.name.endswith('.partial.h5') for p in out.iterdir())
    with pytest.raises(FeatureError, match='no such feature store'): load_features(features_path(out, bad))


def test_a_frame_that_does_not_decode_unchunked(small, tmp_path, capsys):
    bad = damaged(small, tmp_path/'bad.avi', [100])
    assert main(['extract', str(bad), '--backbone', 'posture', '--chunk-s', '0', '--out', str(tmp_path/'o'), '--quiet']) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith('mousebehav: error:')]
    assert len(err) == 1 and 'bad.avi: frame 100 cannot be decoded' in err[0], err
    assert not features_path(tmp_path/'o', bad).exists()


def test_unfinished_stores_of_another_plan_are_refused(small, tmp_path):
    kw = dict(backbone='posture', progress=False)
    extract(small, tmp_path, chunk_s=30, max_frames=50, workers=1, **kw)
    with pytest.raises(FeatureError, match='chunk length that made them'): extract(small, tmp_path, chunk_s=0, **kw)
    extract(small, tmp_path, chunk_s=0, max_frames=50, overwrite=True, **kw)  # starts again without chunks
    assert not list(tmp_path.glob('*.chunk*')) and (tmp_path/'of10.partial.h5').exists()
    with pytest.raises(FeatureError, match='without chunks'): extract(small, tmp_path, chunk_s=30, **kw)
    with pytest.raises(FeatureError, match='workers'): extract(small, tmp_path, chunk_s=0, workers=0, **kw)


def test_dask_chunk_tasks_equal_local_workers(small, tmp_path):
    from dask.distributed import Client, LocalCluster
    kw = dict(backbone='posture', chunk_s=30, progress=False)
    local = extract_many([small], tmp_path/'local', workers=2, **kw)[0]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, Client(cl) as c:
        dsk = extract_many([small], tmp_path/'dask', client=c, **kw)[0]
    A, B = load_features(local), load_features(dsk)
    assert len(json.loads(B.attrs['chunks'])) == 2
    np.testing.assert_array_equal(A.features, B.features); np.testing.assert_array_equal(A.bbox, B.bbox)
    assert not list((tmp_path/'dask').glob('*partial*'))


def test_extract_backbone_motion_and_posture_plus_motion(tmp_path, capsys):
    from mousebehav.motion import combine_stores
    video = fetch_file('bsoid-panels', 'itch_hstacked.mp4')                # 95 frames, three 450x360 panels
    v = f'{video}@0,0,450,360'
    assert main(['extract', v, '--backbone', 'motion', '--stride', '3', '--out', str(tmp_path/'m'), '--quiet']) == 0
    M = load_features(features_path(tmp_path/'m', video, '0,0,450,360'))
    assert M.backbone == 'motion' and M.features.shape[0] == 32 and 'front_3-6Hz' in json.loads(M.attrs['columns'])
    assert main(['extract', v, '--backbone', 'posture+motion', '--stride', '3', '--out', str(tmp_path/'pm'), '--quiet']) == 0
    out = capsys.readouterr().out
    p = features_path(tmp_path/'pm', video, '0,0,450,360')
    assert str(p) in out and '(posture+motion' in out
    C = load_features(p)
    P2, M2 = (features_path(tmp_path/'pm'/k, video, '0,0,450,360') for k in ('posture', 'motion'))
    np.testing.assert_array_equal(load_features(M2).features, M.features)
    ref = load_features(combine_stores([P2, M2], tmp_path/'ref.h5'))
    np.testing.assert_array_equal(C.features, ref.features)
    assert C.backbone == 'posture+motion' and C.features.shape[1] == ref.features.shape[1]
    assert main(['extract', v, '--backbone', 'motion', '--segmentation', 'none', '--out', str(tmp_path/'n'), '--quiet']) == 2
    assert 'motion descriptors need a segmentation' in capsys.readouterr().err
    assert main(['extract', v, '--backbone', 'posture+posture', '--out', str(tmp_path/'pp'), '--quiet']) == 2
