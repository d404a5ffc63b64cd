"""Secret masking: known values and credential-shaped strings, nothing else."""

from jupyter_sessions.redact import MASK, redact, redact_text

DOTENV = """# settings
DATABASE_URL=postgres://localhost/app
AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
export GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB
api_key: abcdef123456
DEBUG=true
"""


def test_dotenv_values_are_masked_names_kept():
    out = redact_text(DOTENV)
    assert "wJalrXUtnFEMI" not in out and "ghp_0123" not in out and "abcdef123456" not in out
    assert 'AWS_SECRET_ACCESS_KEY="' + MASK + '"' in out and "api_key: " + MASK in out
    assert "DATABASE_URL=postgres://localhost/app" in out and "DEBUG=true" in out  # not secrets


def test_token_shapes_and_known_values():
    text = ("use sk-ant-api03-abcdefghijklmnopqrstuv and AKIAABCDEFGHIJKLMNOP and my-own-key-value "
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- done")
    out = redact_text(text, ["my-own-key-value"])
    for leaked in ("sk-ant-api03", "AKIAABCD", "my-own-key-value", "MIIEow"):
        assert leaked not in out
    assert out.startswith("use ") and out.endswith(" done")


def test_plain_text_is_untouched_and_nested_values_are_walked():
    prose = "The token budget is 2048 and the password field must be validated (see secret_sauce.py)."
    assert redact_text(prose) == prose
    assert redact({"a": ["x hunter2-known y"], "hunter2-known": 1}, ["hunter2-known"]) == {
        "a": [f"x {MASK} y"], MASK: 1}


def test_prefixed_lines_from_tools_are_masked_too():
    for line in ("     3\tSTRIPE_SECRET_KEY=dotenv-abcdef1234", "repos/app/.env:3:STRIPE_SECRET_KEY=dotenv-abcdef1234"):
        assert "dotenv-abcdef1234" not in redact_text(line)
