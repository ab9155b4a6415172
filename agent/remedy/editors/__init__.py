"""Pure text editors: each takes a file's text and returns the edited text, touching nothing else.

They raise EditError (a one-line message) when the edit is ambiguous or impossible;
the actions turn it into a refusal.
"""


class EditError(ValueError):
    pass


def newline_of(text: str) -> str:
    """The file's line ending (CRLF files stay CRLF)."""
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def one_line(value: str, what: str = "value") -> str:
    if "\n" in value or "\r" in value:
        raise EditError(f"{what} must be a single line")
    return value
