"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does with Quarto), or check that it is in step.

    python tools/readme.py          # rewrite README.md
    python tools/readme.py --check  # exit 1 if README.md differs from what index.ipynb gives
"""
import re, sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent
HEADER = "<!-- Written from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"

def render() -> str:
    nb = nbformat.read(root/'nbs'/'index.ipynb', as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(re.match(r'#\|\s*(hide\b|exec_doc\b|echo:\s*false|default_exp)', l) for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            c.outputs = [o for o in c.get('outputs', []) if o.get('output_type') in ('stream', 'execute_result')
                         and ('text' in o or 'text/plain' in o.get('data', {}))]
            for o in c.outputs:
                if 'data' in o: o['data'] = {'text/plain': o['data']['text/plain']}
        cells.append(c)
    nb.cells = cells
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = re.sub(r'\n{3,}', '\n\n', md).strip() + '\n'
    return HEADER + md

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != text:
            sys.exit("README.md is not in step with nbs/index.ipynb: run `python tools/readme.py` and commit README.md")
        print("README.md is in step with nbs/index.ipynb")
    else:
        (root/'README.md').write_text(text); print("wrote README.md")
