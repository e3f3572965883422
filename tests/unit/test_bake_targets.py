"""render.parse_targets: the target names of a bake file, by the HCL scanner that replaced
python-hcl2 (start-up, issue 26): what a comment, string, template or heredoc holds is text, and
a file whose brackets, strings, comments or heredocs do not close is bad input with its line."""

from __future__ import annotations

import pytest

from comfyimg import render
from comfyimg.errors import BadInput
from tests.lib.project import REPO


def test_the_real_bake_file_declares_its_targets():
    found = render.parse_targets((REPO / "docker-bake.hcl").read_text())
    assert {"core-cpu", "core-cuda", "complete-cuda"} <= found
    assert not any(name.startswith(("#", "/", "$")) for name in found)


def test_text_that_looks_like_a_target_is_not_one():
    text = '''
# target "hash" {}
// target "slashes" {}
/* target "block" {
}
*/
variable "NOTES" {
  default = <<EOT
target "heredoc" {
EOT
}
variable "INDENTED" {
  default = <<-EOT
    target "indented" {
    EOT
}
variable "TEMPLATE" {
  default = "${join(",", ["target \\"quoted\\" {", "}"])}%{ if true }}{%{ endif }"
}
target "real" {
  args = { X = "target \\"inner\\" {" }
  tags = ["a", "b"]
}
target  "spaced"   {
}
group "default" { targets = ["real"] }
'''
    assert render.parse_targets(text) == {"real", "spaced"}


@pytest.mark.parametrize(("text", "line", "why"), [
    ('target "broken" {\n  x = \n', 1, r"'\{' opened here is never closed"),
    ('target "a" {\n  x = "open\n}\n', 2, "string is not closed on its line"),
    ('target "a" {\n}\n}\n', 3, "closes nothing that is open"),
    ('target "a" {\n  x = [1, 2)\n}\n', 2, "closes nothing that is open|does not match"),
    ('/* never\nclosed\n', 1, r"/\* comment is never closed"),
    ('variable "V" {\n  default = <<EOT\ntext\n}\n', 2, "heredoc <<EOT is never ended"),
    ('target "a" {\n  x = "${foo(\n}\n', 3, "closes a bracket it does not match"),
])
def test_a_malformed_file_is_bad_input_naming_its_line(text, line, why):
    with pytest.raises(BadInput, match=rf"^docker-bake\.hcl:{line}: syntax: not valid HCL \(.*({why})"):
        render.parse_targets(text)


def test_targets_of_a_missing_file_is_none(tmp_path):
    assert render.targets(tmp_path / "docker-bake.hcl") is None
