"""Check the documentation build as far as it can go without Quarto.

1. nbdev's own docs pre-processing (`nbdev.serve.proc_nbs`, the first half of `nbdev_docs`) into `_proc/`;
2. an HTML preview of every processed notebook with nbconvert into `_docs_preview/` (no execution: stored outputs).
Quarto renders the real site in the GitHub workflow (.github/workflows/deploy.yaml).
"""
import shutil, sys, time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbdev.serve import proc_nbs

root = Path(__file__).resolve().parent.parent
t = time.time()
proc = proc_nbs(root/'nbs', n_workers=0)
proc = Path(proc) if proc else root/'_proc'
nbs = sorted(proc.glob('*.ipynb'))
src = sorted(p.name for p in (root/'nbs').glob('*.ipynb'))
missing = sorted(set(src) - {p.name for p in nbs})
if missing: sys.exit(f"docs pre-processing produced no page for: {', '.join(missing)}")
out = root/'_docs_preview'; shutil.rmtree(out, ignore_errors=True); out.mkdir()
exp = HTMLExporter()
for p in nbs:
    nb = nbformat.read(p, as_version=4)
    body, _ = exp.from_notebook_node(nb)
    if len(body) < 1000: sys.exit(f"{p.name}: HTML preview is suspiciously small ({len(body)} bytes)")
    (out/(p.stem + '.html')).write_text(body)
    imgs = sum(1 for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if 'image/png' in o.get('data', {}))
    print(f"  {p.name:28s} {len(nb.cells):3d} cells {imgs:2d} figures  -> _docs_preview/{p.stem}.html ({len(body)//1024} KB)")
print(f"docs check: {len(nbs)} pages in {time.time()-t:.0f} s")
