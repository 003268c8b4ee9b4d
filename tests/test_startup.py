"""Start-up of `mousebehav`: the help, `info` and `data` load no stage module; a command loads only its own; every command
of the full parser is listed; errors and warnings are one line on stderr."""
import argparse, importlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from mousebehav.cli import BENCHMARKS, COMMANDS, STAGES

EXE = shutil.which('mousebehav') or str(Path(sys.executable).parent/'mousebehav')
HEAVY = ('torch', 'torchvision', 'pandas', 'h5py', 'numba', 'scipy', 'sklearn', 'dask', 'matplotlib')


def mb(*args, env=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def loaded(code: str, *argv) -> set:
    "Modules (mousebehav's and the heavy libraries) loaded after running `code` in a fresh interpreter."
    code += ("\nimport sys; print('MODULES', *(m for m in sys.modules if m.split('.')[0] == 'mousebehav' or m in "
             f"{HEAVY!r}))")
    r = subprocess.run([sys.executable, '-c', code, *map(str, argv)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.splitlines()[-1].split()[1:])


def old_parser_commands():
    "{command: help} and {benchmark: help} as every stage module's add_cli/add_bench define them (the full parser)."
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(); bsub = argparse.ArgumentParser().add_subparsers()
    for name in STAGES:
        m = importlib.import_module(f'mousebehav.{name}')
        if hasattr(m, 'add_cli'): m.add_cli(sub)
        if hasattr(m, 'add_bench'): m.add_bench(bsub)
    helps = lambda s: {a.dest: a.help for a in s._choices_actions}
    return helps(sub), helps(bsub)


def test_quick_commands_finish(data_dir):
    of = data_dir/'dlc-openfield'/'m3v1mp4.mp4'
    r = mb('--help'); assert r.returncode == 0 and 'COMMAND' in r.stdout, r.stderr
    r = mb('info', of); assert r.returncode == 0 and 'frames 2330' in r.stdout and '640x480' in r.stdout, r.stderr
    r = mb('info', '--json', of); assert r.returncode == 0 and json.loads(r.stdout)['width'] == 640
    r = mb('data', 'list'); assert r.returncode == 0 and 'dlc-openfield' in r.stdout, r.stderr
    r = mb('bench'); assert r.returncode == 2 and all(b in r.stdout for b in BENCHMARKS)
    r = mb('--version'); assert r.returncode == 0 and r.stdout.startswith('mousebehav ')


def test_parsing_and_running_info_loads_no_stage(data_dir):
    of = data_dir/'dlc-openfield'/'m3v1mp4.mp4'
    parse = "import sys; from mousebehav.cli import build_parser; build_parser(sys.argv[1:]).parse_args(sys.argv[1:])"
    assert loaded(parse, 'info', of) == {'mousebehav', 'mousebehav.cli'}
    assert loaded(parse, 'data', 'list') == {'mousebehav', 'mousebehav.cli'}
    assert loaded(parse, 'bench') == {'mousebehav', 'mousebehav.cli'}
    ran = loaded("import sys; from mousebehav.cli import main; main(sys.argv[1:])", 'info', of)
    assert ran == {'mousebehav', 'mousebehav.cli', 'mousebehav.video'}, ran


@pytest.mark.parametrize('argv', [['segment', 'v.mp4', '--out', 'x.h5'], ['sync', 'a.mp4', 'b.mp4', '--out', 's.csv'],
                                  ['bench', 'segment'], ['calib', 'c.mat']])
def test_a_command_loads_its_own_stage_and_no_cnn(argv):
    parse = "import sys; from mousebehav.cli import build_parser; build_parser(sys.argv[1:]).parse_args(sys.argv[1:])"
    mods = loaded(parse, *argv)
    table = BENCHMARKS[argv[1]] if argv[0] == 'bench' else COMMANDS[argv[0]]
    assert f'mousebehav.{table[0]}' in mods and 'torch' not in mods, mods
    others = {f'mousebehav.{m}' for m, _ in COMMANDS.values()} - {f'mousebehav.{table[0]}', 'mousebehav.cli'}
    assert not (mods & others - {'mousebehav.video'}), mods


def test_help_lists_every_command_the_full_parser_had():
    cmds, benches = old_parser_commands()
    assert cmds == {k: v[1] for k, v in COMMANDS.items() if v[0] != 'cli'}
    assert benches == {k: v[1] for k, v in BENCHMARKS.items()}
    out = ' '.join(mb('--help').stdout.split())
    for name, text in list(cmds.items()) + [('data', ''), ('info', ''), ('bench', '')]:
        assert f' {name} ' in out and ' '.join(text.split()) in out, name
    out = ' '.join(mb('bench', '--help').stdout.split())
    for name, text in benches.items(): assert f' {name} ' in out and ' '.join(text.split()) in out, name


def test_every_command_keeps_its_options():
    "Each command's own help (options from its module) is the one the full parser gave."
    from mousebehav.cli import build_parser
    full = build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in COMMANDS:
        lazy = build_parser([cmd])
        lsub = next(a for a in lazy._actions if isinstance(a, argparse._SubParsersAction))
        assert lsub.choices[cmd].format_help() == sub.choices[cmd].format_help(), cmd


def test_errors_and_exit_codes():
    r = mb(); assert r.returncode == 2 and 'COMMAND' in r.stdout
    r = mb('nothing'); assert r.returncode == 2 and "invalid choice: 'nothing'" in r.stderr
    for c in COMMANDS: assert repr(c) in r.stderr                     # every command offered
    r = mb('segment'); assert r.returncode == 2 and 'required: VIDEO, --out' in r.stderr
    r = mb('info', 'missing.mp4')
    assert r.returncode == 2 and r.stderr.strip() == 'mousebehav: error: missing.mp4: no such file'
    r = mb('data', 'fetch', 'nothing'); assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'unknown dataset' in r.stderr
    r = mb('bench', 'segment', '--size', '12x5')
    assert r.returncode == 2 and r.stderr.startswith('mousebehav: error: --size 12x5') and 'Traceback' not in r.stderr


def test_user_errors_of_modules_loaded_while_running_are_one_line():
    "A stage module imported by another one while a command runs still has its errors printed as one line."
    code = ("import sys; from mousebehav import cli; cli.build_parser(['sync']); import mousebehav.segment as S; "
            "assert S.SegmentError in cli._user_errors() and cli.UserError in cli._user_errors(); "
            "assert not isinstance(ValueError('x'), cli._user_errors())")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_warnings_are_one_line_even_when_switched_off(data_dir, tmp_path):
    "PYTHONWARNINGS=ignore: a warning raised by mousebehav is still printed, once, as one line."
    from mousebehav.video import iter_frames, write_video
    clip = write_video(tmp_path/'clip.avi', (f for _, f in iter_frames(data_dir/'dlc-openfield'/'m3v1mp4.mp4', stop=20)), 30)
    r = mb('segment', clip, '--out', tmp_path/'s.h5', '--max-frames', 50, '--quiet', env={'PYTHONWARNINGS': 'ignore'})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('mousebehav: warning: ') and 'clip.avi' in lines[0], r.stderr
    assert 'only 20 frames' in lines[0]


def test_video_header_warning_is_one_line(field_cases):
    "`info` on an AVI whose header says 60 frames but 90 decode: one warning line naming the file."
    r = mb('info', field_cases/'hdr60.avi', env={'PYTHONWARNINGS': 'ignore'})
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.startswith('mousebehav: warning: ')]
    assert len(warn) == 1 and 'hdr60.avi' in warn[0] and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'frames 90' in r.stdout


def test_a_warning_raised_twice_in_one_command_is_printed_once(field_cases):
    "Several stages probe one file (and `predict` reads it more than once): its warning is printed once per command."
    r = mb('info', field_cases/'hdr60.avi', field_cases/'hdr60.avi', field_cases/'raw.h264', env={'PYTHONWARNINGS': 'ignore'})
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.startswith('mousebehav: warning: ')]
    assert len(warn) == 2 and 'hdr60.avi' in warn[0] and 'raw.h264' in warn[1], r.stderr
    assert r.stdout.count('frames 90') == 3
