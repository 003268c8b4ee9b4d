"""Segmentation memory does not grow with the video: rows and masks go to the HDF5 file frame by frame, and masks are read
back one frame at a time (an hour of 640×480 masks is 33 GB)."""
import gc, shutil, subprocess, sys, tempfile, tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from mousebehav import segment as S

MASK_MB = 480 * 640 / 2**20          # one 640×480 bool mask in memory


@pytest.fixture(scope='module')
def of(data_dir): return data_dir/'dlc-openfield'/'m3v1mp4.mp4'   # 2330 frames, 640×480, a black mouse


def peak_rss_mb(*args) -> float:
    """Peak resident memory (MB) of `mousebehav ARGS` in a fresh interpreter, as the process itself reads it at the end
    (VmHWM; a child's ru_maxrss would include the memory of this test process at the fork)."""
    code = ("import sys; from mousebehav.cli import main; rc = main(sys.argv[2:]); open(sys.argv[1], 'w').write("
            "[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]); sys.exit(rc)")
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, '-c', code, f'{d}/peak', *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return int(Path(f'{d}/peak').read_text()) / 1024


def traced_peak_mb(fn):
    "(fn(), the peak of memory allocated by Python and numpy while it ran, MB)."
    gc.collect(); tracemalloc.start()
    try:
        out = fn(); peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally: tracemalloc.stop()
    return out, peak


def test_cli_store_mask_peak_memory_is_flat(of, tmp_path):
    "`segment --store-mask` on 5x more frames: the same peak (the masks would add 1200 x 0.3 MB = 350 MB)."
    short = peak_rss_mb('segment', of, '--out', tmp_path/'short.h5', '--store-mask', '--max-frames', 300, '--quiet')
    long = peak_rss_mb('segment', of, '--out', tmp_path/'long.h5', '--store-mask', '--max-frames', 1500, '--quiet')
    assert long <= 1.1 * short, (short, long)
    with h5py.File(tmp_path/'long.h5') as f:
        assert f['mask'].shape == (1500, 480, 640) and f['mask'].chunks == (1, 480, 640) and f['mask'].compression == 'gzip'
        k = [0, 700, 1499]
        assert (f['mask'][k].sum((1, 2)) == f['area'][k]).all() and (f['area'][:] > 0).all()


def test_segment_video_keeps_no_mask_in_memory(of):
    "The Python API with store_mask: the masks go to a temporary file, removed with the result."
    run = lambda n: S.segment_video(of, max_frames=n, store_mask=True, progress=False)
    s1, p1 = traced_peak_mb(lambda: run(100))
    s2, p2 = traced_peak_mb(lambda: run(400))
    assert p2 - p1 < 0.1 * 300 * MASK_MB, (p1, p2)        # in memory, 300 more masks would add 88 MB
    assert s2.mask.shape == (400, 480, 640) and (s2.mask[399].sum() == s2.area[399]) and s2.mask[399].dtype == bool
    assert (np.asarray(s1.mask).sum((1, 2)) == s1.area).all() and isinstance(s1.mask, S.MaskStack)
    tmp = s2.mask.path; assert tmp.exists() and tmp.parent == Path(tempfile.gettempdir())
    del s2; gc.collect()
    assert not tmp.exists()


@pytest.fixture(scope='module')
def long_store(tmp_path_factory):
    """A segmentation file of 1500 frames of 640×480 masks (a moving 30×40 blob) in the layout files have always had
    (fixed-size datasets, masks gzip-compressed one frame a chunk), written with h5py alone."""
    p = tmp_path_factory.mktemp('store')/'long.h5'
    T = 1500; x = np.arange(T) % 600
    with h5py.File(p, 'w') as f:
        f['frame_index'] = np.arange(T); f['area'] = np.full(T, 1200, np.int32)
        f['bbox'] = np.stack([x, np.full(T, 200), x + 40, np.full(T, 230)], 1).astype(np.int32)
        f['centroid'] = np.stack([x + 19.5, np.full(T, 214.5)], 1).astype(np.float32)
        d = f.create_dataset('mask', (T, 480, 640), bool, chunks=(1, 480, 640), compression='gzip', compression_opts=4)
        for i in range(T):
            m = np.zeros((480, 640), bool); m[200:230, x[i]:x[i] + 40] = True; d[i] = m
        f.attrs.update(method='imbs', params='{}', fps=30.0, video='synthetic.mp4', crop='', format='mousebehav.segmentation/1')
    return p


def test_load_segmentation_reads_masks_frame_by_frame(long_store):
    "Reading a long file and walking its masks: memory of a few masks, not of 1500 (440 MB)."
    def walk():
        s = S.load_segmentation(long_store)
        return s, [int(m.sum()) for m in s.mask]
    (s, sums), peak = traced_peak_mb(walk)
    assert peak < 20 * MASK_MB, peak
    assert len(s) == 1500 and sums == s.area.tolist()
    assert s.mask[1499][215, 1499 % 600 + 5] and s.mask[-1].sum() == 1200


def test_save_segmentation_copies_frame_by_frame(long_store, tmp_path):
    "Copying a long file through load_segmentation and save_segmentation streams its masks."
    s, peak = traced_peak_mb(lambda: (S.save_segmentation(S.load_segmentation(long_store), tmp_path/'copy.h5'),
                                      S.load_segmentation(long_store))[1])
    assert peak < 20 * MASK_MB, peak
    c = S.load_segmentation(tmp_path/'copy.h5')
    assert (c.bbox == s.bbox).all() and all((c.mask[i] == s.mask[i]).all() for i in (0, 1234, 1499))
    assert not list(tmp_path.glob('.*partial*'))


def test_failed_run_leaves_no_output(of, tmp_path, monkeypatch):
    "A run that fails half-way (here at frame 50) leaves neither the output nor its temporary file."
    update = S.Segmenter.update
    def failing(self, frame):
        if self.n == 50: raise RuntimeError('disk full')
        return update(self, frame)
    monkeypatch.setattr(S.Segmenter, 'update', failing)
    with pytest.raises(RuntimeError, match='disk full'):
        S.segment_video(of, max_frames=100, store_mask=True, progress=False, out=tmp_path/'s.h5')
    assert list(tmp_path.iterdir()) == []


def test_damaged_file_is_a_clear_error(long_store, tmp_path):
    bad = tmp_path/'bad.h5'; shutil.copy(long_store, bad)
    with h5py.File(bad, 'a') as f: del f['area']; f['area'] = np.zeros(10, np.int32)   # rows lost
    with pytest.raises(S.SegmentError, match='different lengths'): S.load_segmentation(bad)
