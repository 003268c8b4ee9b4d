"""Video reading: frame counts, frame times and frame rates come from what decodes, not from the header; files that
are not video are refused by name. Field cases (../shared/field-cases) and other members of each family made here."""
import shutil, struct, warnings, wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pytest

from mousebehav.video import (ASSUMED_FPS, VideoError, VideoWarning, file_fingerprint, frame_times, iter_batches,
                              iter_frames, probe, read_frame)


# ---- helpers: OpenCV as the reference decoder, and makers of family members ------------------------------------------

def cv_frames(path, n=10**9):
    "Every frame OpenCV decodes, one by one from the first (BGR)."
    c = cv2.VideoCapture(str(path)); out = []
    while len(out) < n:
        ok, f = c.read()
        if not ok: break
        out.append(f)
    return out


def cv_count(path) -> int:
    c = cv2.VideoCapture(str(path)); n = 0
    while c.grab(): n += 1
    return n


def quiet(f, *args, **kw):
    "`f(*args, **kw)`, failing on any VideoWarning."
    with warnings.catch_warnings():
        warnings.simplefilter('error', VideoWarning)
        return f(*args, **kw)


def encode(path, frames, pts=None, rate=30, codec='libx264', fmt=None):
    "Encode BGR frames with PyAV; `pts` (ms) gives each frame its own time."
    with av.open(str(path), 'w', format=fmt) as o:
        s = o.add_stream(codec, rate=rate); s.height, s.width = frames[0].shape[:2]; s.pix_fmt = 'yuv420p'
        if pts is not None: s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for k, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format='bgr24')
            if pts is not None: f.pts, f.time_base = int(pts[k]), Fraction(1, 1000)
            for p in s.encode(f): o.mux(p)
        for p in s.encode(): o.mux(p)
    return Path(path)


def rotate_mp4(src, dst, rot):
    "A copy of the MP4 `src` whose display matrix (in its tkhd box) turns it by `rot` degrees, as a rotated camera's."
    c, s = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[rot]
    b = bytearray(Path(src).read_bytes()); i = b.find(b'tkhd') + 8; assert b[i-4] == 0  # a version-0 tkhd
    b[i+36:i+72] = struct.pack('>9i', c << 16, -s << 16, 0, s << 16, c << 16, 0, 0, 0, 1 << 30)
    Path(dst).write_bytes(bytes(b)); return Path(dst)


def mjpg_avi(path, frames, fps):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, frames[0].shape[1::-1])
    for f in frames: w.write(f)
    w.release(); return Path(path)


def remux(src, dst):
    with av.open(str(src)) as i, av.open(str(dst), 'w') as o:
        si = i.streams.video[0]; so = o.add_stream_from_template(si)
        for p in i.demux(si):
            if p.dts is not None: p.stream = so; o.mux(p)
    return Path(dst)


def elementary(src, dst):
    with av.open(str(src)) as i: Path(dst).write_bytes(b''.join(bytes(p) for p in i.demux(video=0) if p.size))
    return Path(dst)


def set_avi_frame_count(src, dst, n):
    b = bytearray(Path(src).read_bytes())
    i = b.find(b'avih'); b[i+24:i+28] = struct.pack('<I', n)
    i = b.find(b'strh'); b[i+40:i+44] = struct.pack('<I', n)
    Path(dst).write_bytes(bytes(b)); return Path(dst)


def set_mkv_duration(src, dst, ms):
    b = bytearray(Path(src).read_bytes()); i = b.find(b'\x44\x89\x88')
    b[i+3:i+11] = struct.pack('>d', ms); Path(dst).write_bytes(bytes(b)); return Path(dst)


@pytest.fixture(scope='module')
def base_frames(field_cases):
    return cv_frames(field_cases/'base.mp4')


def check_stream(path, n):
    "Every frame decodes once, numbered 0..n-1, pixel for pixel as OpenCV decodes it; random access agrees."
    ref = cv_frames(path); assert len(ref) == n
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', VideoWarning)
        got = list(iter_frames(path))
        assert [i for i, _ in got] == list(range(n))
        assert all(np.array_equal(f, r) for (_, f), r in zip(got, ref))
        for i in sorted({0, 1 % n, n // 3, n // 2, n - 2 if n > 1 else 0, n - 1}):
            assert np.array_equal(read_frame(path, i), ref[i]), (path, i)
        assert len(frame_times(path)) == n


# ---- sample data ------------------------------------------------------------------------------------------------------

def test_every_sample_video_counts_what_opencv_decodes(data_dir):
    vids = sorted(p for p in data_dir.glob('*/*') if p.suffix in ('.mp4', '.avi'))
    assert len(vids) >= 100
    for v in vids:
        i = quiet(probe, v); c = cv2.VideoCapture(str(v))
        assert (i.frame_count, i.header_frame_count, i.fps_source) == (cv_count(v), int(c.get(cv2.CAP_PROP_FRAME_COUNT)), 'timestamps'), v
        assert (i.width, i.height) == (int(c.get(3)), int(c.get(4))), v
        assert i.fps == pytest.approx(c.get(cv2.CAP_PROP_FPS), rel=1e-9), v
        assert len(frame_times(v)) == i.frame_count


def test_open_field_frames_times_and_random_access(data_dir):
    v = data_dir/'dlc-openfield'/'m3v1mp4.mp4'
    i = probe(v)
    assert (i.frame_count, i.width, i.height, i.codec) == (2330, 640, 480, 'h264')
    assert i.fps == pytest.approx(30.0003, rel=1e-6)
    t = frame_times(v)
    assert t.dtype == np.float64 and t.shape == (2330,) and np.allclose(t, np.arange(2330) * 0.033333)
    # the keyframes, where a seek lands: this x264 4:4:4 video decodes wrongly after a seek unless the decoder has
    # seen the encoder's signature in the first packet
    want = {0, 182, 548, 797, 1173, 2219, 2329}
    seq = {}
    for k, f in iter_frames(v):
        if k in want: seq[k] = f
    assert sorted(seq) == sorted(want)
    for k in sorted(want): assert np.array_equal(read_frame(v, k), seq[k]), k


def test_info_dict_keeps_its_keys(field_cases):
    d = probe(field_cases/'base.mp4').to_dict()
    assert {'path', 'frame_count', 'fps', 'width', 'height', 'codec', 'duration_s', 'header_frame_count', 'fps_source'} <= set(d)
    assert d['frame_count'] == 90 and d['duration_s'] == pytest.approx(3.0, rel=1e-3)


# ---- the header undercounts: hdr60.avi and its family -----------------------------------------------------------------

def test_hdr60_all_frames_and_a_warning(field_cases):
    v = field_cases/'hdr60.avi'
    assert cv2.VideoCapture(str(v)).get(cv2.CAP_PROP_FRAME_COUNT) == 60  # the header
    with pytest.warns(VideoWarning, match=r'hdr60\.avi: the header says 60 frames but 90 frames decode'):
        i = probe(v)
    assert (i.frame_count, i.header_frame_count, i.fps_source) == (90, 60, 'timestamps')
    assert i.fps == pytest.approx(30.0003, rel=1e-6)
    with pytest.warns(VideoWarning, match='hdr60.avi'): np.testing.assert_allclose(frame_times(v), np.arange(90) * 0.033333)
    with pytest.warns(VideoWarning, match='60 frames'):
        assert sum(len(b.index) for b in iter_batches(v, 32)) == 90
    check_stream(v, 90)


@pytest.mark.parametrize('n', [0, 12])
def test_avi_header_that_undercounts(base_frames, tmp_path, n):
    v = set_avi_frame_count(mjpg_avi(tmp_path/'w30.avi', base_frames[:30], 30), tmp_path/f'hdr{n}.avi', n)
    with pytest.warns(VideoWarning, match=rf'hdr{n}\.avi: the header (says|implies) {n} frames .*30 frames decode'):
        i = probe(v)
    assert (i.frame_count, i.header_frame_count) == (30, n)
    check_stream(v, 30)


def test_avi_header_that_overcounts_is_a_warning(base_frames, tmp_path):
    v = set_avi_frame_count(mjpg_avi(tmp_path/'w30.avi', base_frames[:30], 30), tmp_path/'hdr45.avi', 45)
    with pytest.warns(VideoWarning, match=r'hdr45\.avi: the header says 45 frames but the file holds only 30: it is truncated') as w:
        i = probe(v)
    assert (i.frame_count, i.header_frame_count, len(w)) == (30, 45, 1)  # the frames that are there, one warning
    check_stream(v, 30)


def test_matroska_header_undercounts(field_cases, tmp_path):
    v = set_mkv_duration(remux(field_cases/'base.mp4', tmp_path/'base.mkv'), tmp_path/'short.mkv', 2000.0)
    hdr = int(cv2.VideoCapture(str(v)).get(cv2.CAP_PROP_FRAME_COUNT))  # OpenCV believes the duration: 2 s x its rate
    assert 60 <= hdr <= 61
    with pytest.warns(VideoWarning, match=rf'short\.mkv: the header implies {hdr} frames .* 90 frames decode'):
        i = probe(v)
    assert (i.frame_count, i.header_frame_count) == (90, hdr)
    with pytest.warns(VideoWarning, match='short.mkv'):
        np.testing.assert_allclose(frame_times(v), np.arange(90) / 30.0003, atol=0.6e-3)  # a time base of 1 ms
    check_stream(v, 90)


def test_truncated_files(data_dir, tmp_path):
    src = (data_dir/'dlc-openfield'/'m3v1mp4.mp4').read_bytes(); (tmp_path/'cut.mp4').write_bytes(src[:len(src)//2])
    with pytest.raises(VideoError, match=r'cut\.mp4: starts like an MP4/MOV file but cannot be read: it is corrupt or truncated'):
        probe(tmp_path/'cut.mp4')
    src = (data_dir/'bsoid-clips'/'group10_example_4.avi').read_bytes(); (tmp_path/'cut.avi').write_bytes(src[:len(src)//2])
    with pytest.warns(VideoWarning, match=r'cut\.avi: the header says 22 frames but the file holds only 11: it is truncated'):
        assert probe(tmp_path/'cut.avi').frame_count == 11  # a recording cut short: its frames are used


def test_a_last_frame_that_does_not_decode_is_not_counted(field_cases, base_frames, tmp_path):
    v = mjpg_avi(tmp_path/'w10.avi', base_frames[:10], 30)
    b = bytearray(v.read_bytes()); k = b.rfind(b'00dc', 0, b.find(b'idx1')); size = struct.unpack('<I', b[k+4:k+8])[0]
    b[k+8:k+8+size] = bytes(size)  # the last JPEG's bytes zeroed: a packet that gives no picture
    bad = tmp_path/'lastbad.avi'; bad.write_bytes(b)
    with pytest.warns(VideoWarning, match=r'lastbad\.avi: the header says 10 frames but 9 frames decode'):
        i = probe(bad)
    assert i.frame_count == 9 == cv_count(bad)
    assert probe(bad, check_frames=False).frame_count == 10  # counting packets only
    check_stream(bad, 9)


# ---- no header at all: raw streams ------------------------------------------------------------------------------------

def test_raw_h264_reads_with_its_own_rate(field_cases):
    v = field_cases/'raw.h264'
    with pytest.warns(VideoWarning, match=r"raw\.h264: a raw h264 stream .* 30 fps from the stream's own timing"):
        i = probe(v)
    assert (i.frame_count, i.fps, i.fps_source, i.header_frame_count) == (90, 30.0, 'header', None)
    with pytest.warns(VideoWarning, match='raw.h264'): np.testing.assert_allclose(frame_times(v), np.arange(90) / 30)
    check_stream(v, 90)


def test_raw_h264_at_another_rate(base_frames, tmp_path):
    v = encode(tmp_path/'pi15.h264', base_frames[:45], rate=15, fmt='h264')
    with pytest.warns(VideoWarning, match=r'pi15\.h264: .* 15 fps'):
        i = probe(v)
    assert (i.frame_count, i.fps, i.fps_source) == (45, 15.0, 'header')
    with pytest.warns(VideoWarning, match='pi15.h264'): np.testing.assert_allclose(frame_times(v), np.arange(45) / 15)
    check_stream(v, 45)


def test_raw_mjpeg_has_an_assumed_rate(field_cases, tmp_path):
    v = elementary(field_cases/'hdr60.avi', tmp_path/'cam.mjpeg')
    with pytest.warns(VideoWarning, match=rf'cam\.mjpeg: a raw mjpeg stream .* assuming {ASSUMED_FPS:g} fps'):
        i = probe(v)
    assert (i.frame_count, i.fps, i.fps_source, i.header_frame_count) == (90, ASSUMED_FPS, 'assumed', None)
    check_stream(v, 90)


# ---- short videos -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['one.avi', 'one.mp4'])
def test_one_frame_video(field_cases, name):
    v = field_cases/name
    i = quiet(probe, v)
    assert (i.frame_count, i.header_frame_count, i.fps_source) == (1, 1, 'timestamps')
    assert i.fps == pytest.approx(30.0003, rel=1e-6)
    assert frame_times(v).tolist() == [0.0]
    check_stream(v, 1)


def test_two_frame_videos(base_frames, tmp_path):
    for v, fps in [(encode(tmp_path/'two.mp4', base_frames[:2]), 30), (mjpg_avi(tmp_path/'two.avi', base_frames[:2], 25), 25)]:
        i = quiet(probe, v)
        assert (i.frame_count, i.fps) == (2, fps)
        np.testing.assert_allclose(frame_times(v), [0, 1 / fps])
        check_stream(v, 2)


# ---- frame times and rates from timestamps ----------------------------------------------------------------------------

def test_variable_frame_rate_mp4(base_frames, tmp_path):
    pts = np.cumsum([0] + [33] * 29 + [67] + [33] * 29 + [100] + [33] * 29)  # ms: a dropped frame, then two
    v = encode(tmp_path/'vfr.mp4', base_frames, pts=pts)
    with pytest.warns(VideoWarning, match=r'vfr\.mp4: variable frame rate: frame intervals range from 33\.0 to 100\.0 ms'):
        i = probe(v)
    assert (i.frame_count, i.fps_source) == (90, 'timestamps') and i.fps == pytest.approx(89 / 3.038)
    with pytest.warns(VideoWarning, match='vfr.mp4'): np.testing.assert_allclose(frame_times(v), pts / 1000)
    check_stream(v, 90)


def test_rotated_video_is_shown_upright_as_opencv_does(base_frames, tmp_path):
    plain = encode(tmp_path/'plain.mp4', base_frames[:5])
    for rot in [90, 180, 270]:
        v = rotate_mp4(plain, tmp_path/f'rot{rot}.mp4', rot)
        i = quiet(probe, v); c = cv2.VideoCapture(str(v))
        assert (i.width, i.height) == (int(c.get(3)), int(c.get(4))) == ((240, 320) if rot != 180 else (320, 240))
        check_stream(v, 5)


# ---- not a video ------------------------------------------------------------------------------------------------------

def test_notes_txt_is_not_a_video(field_cases):
    assert cv2.VideoCapture(str(field_cases/'notes.txt')).isOpened()  # OpenCV (FFmpeg's tty reader) opens it
    with pytest.raises(VideoError, match=r"notes\.txt: not a video \(a text file, which FFmpeg's 'tty' reader"):
        probe(field_cases/'notes.txt')
    with pytest.raises(VideoError, match='not a video'): next(iter_batches(field_cases/'notes.txt'))


def _not_videos(d: Path, frame) -> dict:
    (d/'labels.csv').write_text('video,start,end,behavior\nbase.mp4,0,10,groom\n')
    (d/'notes.md').write_text('# Session 3\n\nMouse 2 groomed a lot. Temperature 22 °C.\n')
    (d/'params.json').write_text('{"fps": 30, "arena": [0, 0, 640, 480]}')
    cv2.imwrite(str(d/'still.jpg'), frame); cv2.imwrite(str(d/'still.png'), frame); shutil.copy(d/'still.jpg', d/'still.dat')
    (d/'report.pdf').write_bytes(b'%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n')
    with h5py.File(d/'features.h5', 'w') as f: f['x'] = np.zeros(10)
    np.save(d/'array.npy', np.zeros(100))
    with wave.open(str(d/'tone.wav'), 'wb') as f: f.setnchannels(1); f.setsampwidth(2); f.setframerate(8000); f.writeframes(bytes(1600))
    (d/'noise.bin').write_bytes(np.random.default_rng(0).integers(0, 256, 50000, dtype=np.uint8).tobytes())
    return {'labels.csv': 'a text file', 'notes.md': 'a text file', 'params.json': 'a text file',
            'still.jpg': 'a still JPEG image', 'still.png': 'a still PNG image', 'still.dat': 'a still JPEG image',
            'report.pdf': 'a PDF document', 'features.h5': 'an HDF5 file', 'array.npy': 'a NumPy array file',
            'tone.wav': 'audio streams only', 'noise.bin': 'no video format FFmpeg knows'}


def test_files_that_are_not_video_are_refused_by_name(field_cases, base_frames, tmp_path):
    for name, why in _not_videos(tmp_path, base_frames[0]).items():
        with pytest.raises(VideoError) as e: probe(tmp_path/name)
        assert str(e.value).startswith(f'{tmp_path/name}: not a video ({why}'), str(e.value)
    for name in ['boris8_tabular.csv', 'README.md']:
        with pytest.raises(VideoError, match=rf'{name}: not a video \(a text file\)'): probe(field_cases/name)


def test_missing_empty_and_folders(tmp_path):
    (tmp_path/'empty.mp4').write_bytes(b'')
    for name, why in [('nope.mp4', 'no such file'), ('empty.mp4', 'empty file'), ('', 'is a folder')]:
        with pytest.raises(VideoError, match=why): probe(tmp_path/name)


# ---- fingerprint and cache --------------------------------------------------------------------------------------------

def test_fingerprint_is_content_not_name(field_cases, tmp_path):
    v = field_cases/'hdr60.avi'  # 470 kB
    assert file_fingerprint(shutil.copy(v, tmp_path/'renamed.avi')) == file_fingerprint(v)
    b = bytearray(v.read_bytes()); b[len(b) // 2] ^= 1; (tmp_path/'edited.avi').write_bytes(b)
    assert file_fingerprint(tmp_path/'edited.avi') != file_fingerprint(v)
    big = tmp_path/'big.bin'; big.write_bytes(bytes(3 * 2**20))
    f0 = file_fingerprint(big)
    with open(big, 'r+b') as f: f.seek(3 * 2**20 - 10); f.write(b'x')
    assert file_fingerprint(big) != f0  # a change in the last MiB
    big = tmp_path/'big.mp4'; big.write_bytes(bytes(8 * 2**20)); f0 = file_fingerprint(big)
    with open(big, 'r+b') as f: f.seek(2**20 + (8 * 2**20 - 2**21 - 2**16) * 9 // 17 + 5); f.write(b'x')
    assert file_fingerprint(big) != f0  # same size, an edit in the middle of the file (a sampled block)


def test_probe_is_cached_until_the_file_changes(base_frames, tmp_path):
    v = mjpg_avi(tmp_path/'clip.avi', base_frames[:3], 30)
    assert probe(v).frame_count == 3
    assert probe(v) is probe(v)  # the same answer, not a new reading
    mjpg_avi(tmp_path/'clip.avi', base_frames[:5], 30)  # a new size: a new reading
    assert probe(v).frame_count == 5 and len(frame_times(v)) == 5
