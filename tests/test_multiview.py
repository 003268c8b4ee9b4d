"""`mousebehav calib` contract: camera table, reprojection report flagging sleap-4cam's broken `side` camera."""
import json, re

from mousebehav.cli import main


def test_calib_flags_broken_camera(data_dir, tmp_path, capsys):
    s = data_dir/'sleap-4cam'
    pts = [str(s/f'minimal_{v}_proofread.analysis.h5') for v in ('back', 'mid', 'side', 'top')]
    assert main(['calib', str(s/'calibration.toml'), '--points', *pts, '--json', str(tmp_path/'c.json')]) == 0
    out = capsys.readouterr().out
    assert "camera 'side' disagrees with the others" in out
    rep = json.loads((tmp_path/'c.json').read_text())['report']
    assert [r['camera'] for r in rep] == ['back', 'mid', 'side', 'top']
    assert [r['flagged'] for r in rep] == [False, False, True, False]
    good = [r['median_px'] for r in rep if not r['flagged']]
    assert max(good) < 10 and 80 < rep[2]['median_px'] < 110


def test_calib_dannce_and_errors(data_dir, tmp_path, capsys):
    assert main(['calib', str(data_dir/'dannce-5cam')]) == 0
    out = capsys.readouterr().out
    assert [l.split()[0] for l in out.splitlines() if re.match(r'\s*cam\d', l)] == ['cam1', 'cam2', 'cam3', 'cam4', 'cam5']
    assert main(['calib', str(tmp_path/'none.toml')]) == 2
    assert 'no such calibration file' in capsys.readouterr().err
    (tmp_path/'x.toml').write_text('[cam_0\n')
    assert main(['calib', str(tmp_path/'x.toml')]) == 2
    assert 'not valid TOML' in capsys.readouterr().err
