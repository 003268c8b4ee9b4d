"Synthetic setups: exact body masks (tail never in the truth), what each setup makes hard, at several sizes; bench_setups rows."
import cv2
import numpy as np
import pytest

from mousebehav.synthetic import SETUPS, SETUP_NOTES, SyntheticMouse, bench_setups, format_setups, mask_iou

SIZES = [(640, 480), (320, 240), (1280, 720)]


def test_every_setup_is_described():
    assert set(SETUP_NOTES) == set(SETUPS) and SETUPS[0] == 'dark_on_light'
    with pytest.raises(ValueError, match='unknown setup'): SyntheticMouse(setup='zebrafish')


def test_default_setup_is_the_default_video():
    a, b = SyntheticMouse(), SyntheticMouse(setup='dark_on_light')
    for i in (0, 99, 150, 181, 299):
        np.testing.assert_array_equal(a[i][0], b[i][0]); np.testing.assert_array_equal(a[i][1], b[i][1])
    assert a.still_range == (100, 220) and a.light_frame == 180 and a.noise == 3.0


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('setup', SETUPS)
def test_truth_masks_are_sane(setup, size):
    w, h = size
    v = SyntheticMouse(w, h, n_frames=90, setup=setup)
    f, m = v[45]
    assert f.shape == (h, w, 3) and f.dtype == np.uint8 and m.shape == (h, w) and m.dtype == bool
    np.testing.assert_array_equal(f, SyntheticMouse(w, h, n_frames=90, setup=setup)[45][0])      # deterministic
    areas = np.array([v.mask(i).sum() for i in range(0, 90, 5)])
    assert (0.006 < areas / (w * h)).all() and (areas / (w * h) < 0.025).all(), (setup, areas.min(), areas.max())
    n, _ = cv2.connectedComponents(m.view(np.uint8))
    assert n == 2                                                                                   # one body, in one piece
    ring = cv2.dilate(m.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool) & ~m & ~v.tail_mask(45)
    g = f.astype(float).mean(2)
    assert abs(g[m].mean() - g[ring].mean()) > 25, setup                                          # the truth is where the mouse is drawn


@pytest.mark.parametrize('size', SIZES)
def test_tail_is_drawn_and_never_in_the_truth(size):
    v = SyntheticMouse(*size, n_frames=300, setup='tail')
    ir = SyntheticMouse(*size, n_frames=300, setup='infrared')
    s = size[0] / 640
    for i in range(0, 300, 23):
        tm, bm = v.tail_mask(i), v.mask(i)
        np.testing.assert_array_equal(bm, ir.mask(i))                    # the body of the infrared setup, nothing more
        assert tm.any() and not (tm & bm).any()
        reach = cv2.distanceTransform((~bm).view(np.uint8), cv2.DIST_L2, 5)[tm].max()
        assert reach > 50 * s, (i, reach)                                # a long tail, over half a body length
        assert (cv2.dilate(bm.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool) & tm).any()   # attached to the body
        f = v[i][0].astype(float).mean(2)
        assert f[tm].mean() > 120 and np.median(f[~(tm | bm)]) < 60      # bright on the dark floor
    assert not SyntheticMouse(setup='dark_on_light').tail_mask(5).any()
    still = [i for i in range(300) if v.still[i]]                        # the tail rests with the mouse
    assert all((v.tail_mask(i) == v.tail_mask(still[0])).all() for i in still[:60:7])


def test_albino_on_bedding():
    v = SyntheticMouse(setup='albino_bedding')
    for i in (10, 150, 280):
        f, m = v[i]; g = f.astype(float).mean(2)
        floor = g[~m]
        assert g[m].mean() > np.median(floor) + 30                       # brighter than the floor on average …
        assert np.percentile(floor, 99) > g[m].mean() - 10               # … but the brightest chips are as bright
        assert floor.std() > 25                                          # coarse bedding everywhere


def test_infrared_is_grey_bright_mouse_dark_floor():
    v = SyntheticMouse(setup='infrared')
    f, m = v[60]
    np.testing.assert_array_equal(f[..., 0], f[..., 1]); np.testing.assert_array_equal(f[..., 1], f[..., 2])
    assert f[m].mean() > 150 and np.median(f[~m]) < 60 and v.noise == 5.0
    h, w = m.shape
    assert f[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20].mean() > f[60:100, 60:100].mean()   # darker corners


def test_timestamp_changes_every_frame_and_is_not_the_mouse():
    v = SyntheticMouse(setup='timestamp')
    x, y, w, h = cv2.boundingRect((v[0][0] == 0).all(2).view(np.uint8))
    assert x == y == 0 and 200 < w < 640 and 15 < h < 60
    for i in range(0, 299, 13):
        assert (v[i][0][:h, :w] != v[i + 1][0][:h, :w]).any()
        assert not v.mask(i)[:h, :w].any()
    assert v.still[:100].all() and not v.still[100:].any()              # asleep at first: only the clock moves
    assert all((v.mask(i) == v.mask(0)).all() for i in range(0, 50, 7))   # not even grooming in the first half of the sleep


def test_flicker_changes_the_light_every_frame():
    v, d = SyntheticMouse(setup='flicker'), SyntheticMouse()
    lv = np.array([v[i][0][~v.mask(i)].mean() for i in range(30)])
    assert np.abs(np.diff(lv)).max() / lv.mean() > 0.05
    np.testing.assert_array_equal(v.mask(77), d.mask(77))
    assert 0.85 < min(v.gain(i) for i in range(300)) and max(v.gain(i) for i in range(300)) < 1.3


@pytest.mark.parametrize('n_frames', [60, 300])
def test_still_never_moves(n_frames):
    v = SyntheticMouse(n_frames=n_frames, setup='still')
    assert v.still.all() and v.still_range == (0, n_frames)
    m0 = v.mask(0)
    assert all((v.mask(i) == m0).all() for i in range(n_frames))


def test_mask_iou():
    m = SyntheticMouse().mask(0)
    assert mask_iou(m, m) == 1 and mask_iou(m, ~m) == 0 and mask_iou(np.zeros_like(m), np.zeros_like(m)) == 1
    half = m.copy(); half[:, : m.shape[1] // 2] = False
    assert mask_iou(half, m) == pytest.approx(half.sum() / m.sum())


def test_bench_setups_rows():
    rows = bench_setups(size=(320, 240), frames=45, setups=('dark_on_light', 'still', 'tail'))
    assert [r['setup'] for r in rows] == ['dark_on_light', 'still', 'tail']
    for r in rows:
        assert {'setup', 'method', 'width', 'height', 'frames', 'iou', 'iou_still', 'iou_moving', 'found'} <= set(r)
        assert 0 <= r['iou'] <= 1 and 0 <= r['found'] <= 1 and (r['width'], r['height'], r['frames']) == (320, 240, 45)
    assert rows[1]['iou_moving'] is None and rows[1]['iou_still'] == pytest.approx(rows[1]['iou'])
    assert rows[0]['iou'] > 0.8                                          # the default scene is segmented well
    table = format_setups(rows)
    assert table.splitlines()[0].split()[:2] == ['setup', 'method'] and 'n/a' in table
    unprimed = bench_setups(size=(320, 240), frames=45, setups=('dark_on_light',), prime=False)[0]
    assert unprimed['warmup_frames'] == 15 and not unprimed['primed']
    with pytest.raises(ValueError, match='unknown setup'): bench_setups(setups=('nope',))


# the goal is IoU >= 0.80 on every setup at 640x480, still frames included (bench segment); albino_bedding: the dark
# look is switched off once the mouse is seen to be brighter than the floor, so the resting white mouse is kept by the
# track (0.889 at 640x480); at 320x240 the moving mouse, followed by the background model alone, is coarser (0.70)
BOUNDS = {'dark_on_light': 0.9, 'albino_bedding': 0.7, 'infrared': 0.9, 'timestamp': 0.85, 'flicker': 0.9, 'still': 0.9,
          'tail': 0.8}


def test_every_setup_is_segmented_above_its_bound():
    "Each setup at 320x240, through the rest (frames 100-219): IoU over all frames and over the still ones."
    rows = bench_setups(size=(320, 240), frames=230)
    assert [r['setup'] for r in rows] == list(SETUPS) and set(BOUNDS) == set(SETUPS)
    for r in rows:
        assert r['found'] == 1.0, r
        assert r['iou'] > BOUNDS[r['setup']] and r['iou_still'] > BOUNDS[r['setup']], r
