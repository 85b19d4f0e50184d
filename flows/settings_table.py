"""The README's configuration table, generated from the settings tree (`flows.settings`)."""

import json

from autolabel.flows.settings import PREFIX, variable_fields


def settings_table_markdown() -> str:
    """The README's configuration table, generated from the fields of `Settings`."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in variable_fields():
        if field.default_factory is not None:
            default = "`~/.autolabel`" if name == f"{PREFIX}HOME" else "(computed)"
        elif field.default is None:
            default = "(unset)"
        elif isinstance(field.default, tuple):  # written as a JSON list in the environment
            default = f"`{json.dumps(list(field.default))}`"
        else:
            default = f"`{field.default}`"
        description = " ".join(str(field.description).split())
        lines.append(f"| `{name}` | {default} | {description} |")
    return "\n".join(lines)
