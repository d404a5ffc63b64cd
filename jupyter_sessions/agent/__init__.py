"""The agent engine: a loop per session that streams a model's steps and runs its tools in the sandbox.

`loop.Agent` is what the session manager drives; `providers` talk to the models, `tools` to the
sandbox, `history` keeps the provider-neutral transcript and `questions` the ask_user_question rules.
"""
