"""`llmbridge login gemini-cli|qwen|kiro`: the login commands (kept apart from `llmbridge.cli`, which
adds the group to `llmbridge`). The flows live in `llmbridge.login` and each provider's `login.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


@click.group()
def login() -> None:
    """Sign in to a provider (or import a login), save the credential file (0600) and add the account
    to the config."""


def _login_options(default_out: str | None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options every login shares."""
    where = default_out or "the bridge's data directory, credentials/NAME.json"

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            [
                click.option("--name", default=None, help="Account name in the config (default: the provider's)."),
                click.option(
                    "--out", type=click.Path(path_type=Path), default=None, help=f"Credential file (default: {where})."
                ),
                click.option("--force", is_flag=True, help="Replace the credential file if it exists."),
                click.option(
                    "--print",
                    "print_only",
                    is_flag=True,
                    help="Print the [[accounts]] block instead of editing the config.",
                ),
                click.option(
                    "--token-url",
                    envvar="LLMBRIDGE_LOGIN_TOKEN_URL",
                    default=None,
                    help="OAuth token endpoint (default: the provider's).",
                ),
            ]
        ):
            command = option(command)
        return command

    return apply


def _say(text: str) -> None:
    click.echo(text, err=True)


def _finish_login(
    ctx: click.Context,
    account: dict[str, object],
    credentials: dict[str, object],
    path: Path,
    print_only: bool,
    imported_from: Path | None = None,
) -> None:
    from llmbridge.login import finish

    finish(
        account,
        credentials,
        path,
        print_only=print_only,
        explicit_config=ctx.obj.get("config_path"),
        say=_say,
        show_block=lambda block: click.echo(block, nl=False),
        imported_from=imported_from,
    )


@login.command("gemini-cli")
@_login_options("~/.gemini/oauth_creds.json")
@click.option(
    "--auth-url", envvar="LLMBRIDGE_LOGIN_AUTH_URL", default=None, help="Google's consent page (default: the real one)."
)
@click.option(
    "--base-url", envvar="LLMBRIDGE_LOGIN_BASE_URL", default=None, help="Code Assist endpoint (default: the real one)."
)
@click.option("--no-browser", is_flag=True, help="Print the sign-in URL and read the code you paste back.")
@click.option("--project", default=None, help="Your Google Cloud project id (paid tiers); default: discovered.")
@click.option("--timeout", default=300.0, hidden=True, help="Seconds to wait for the browser's redirect.")
@click.option("--onboard-poll-interval", default=5.0, hidden=True, help="Seconds between onboarding polls.")
@click.pass_context
def login_gemini_cli(ctx: click.Context, /, **options: Any) -> None:
    """Google sign-in as the Gemini CLI does it (browser + loopback redirect, or --no-browser), then Code
    Assist project discovery and onboarding; writes oauth_creds.json in the Gemini CLI's format."""
    from llmbridge.login import check_target
    from llmbridge.providers.gemini_cli import login as gemini

    path = (options["out"] or Path(gemini.DEFAULT_OUT)).expanduser().absolute()
    flow = gemini.GeminiLogin(
        **_given(auth_url=options["auth_url"], token_url=options["token_url"], base_url=options["base_url"]),
        project=options["project"],
        no_browser=options["no_browser"],
        timeout=options["timeout"],
        onboard_poll_interval=options["onboard_poll_interval"],
    )
    with _login_errors():
        check_target(path, options["force"], "gemini-cli")
        _say(gemini.TERMS)
        result = gemini.sign_in(
            flow, _say, lambda prompt: click.prompt(prompt, err=True, default="", show_default=False)
        )
        who = f" as {result.email}" if result.email else ""
        _say(f"Signed in{who}; Code Assist project {result.project.project} (tier {result.project.tier or 'current'}).")
        entry = gemini.account_entry(options["name"] or "gemini-cli", path, result, flow)
        _finish_login(ctx, entry, result.credentials, path, options["print_only"])


@login.command("qwen")
@_login_options("~/.qwen/oauth_creds.json")
@click.option(
    "--device-url",
    envvar="LLMBRIDGE_LOGIN_DEVICE_URL",
    default=None,
    help="Device-code endpoint (default: the real one).",
)
@click.option("--no-browser", is_flag=True, help="Only print the URL and code; do not open a browser.")
@click.option("--poll-interval", default=2.0, hidden=True, help="Seconds between polls (Qwen Code's 2 s).")
@click.pass_context
def login_qwen(ctx: click.Context, /, **options: Any) -> None:
    """Qwen's device-code sign-in with PKCE, as Qwen Code does it; writes oauth_creds.json in Qwen Code's format."""
    from llmbridge.login import Progress, check_target
    from llmbridge.providers.qwen import login as qwen

    path = (options["out"] or Path(qwen.DEFAULT_OUT)).expanduser().absolute()
    flow = qwen.QwenLogin(
        **_given(device_url=options["device_url"], token_url=options["token_url"]),
        no_browser=options["no_browser"],
        poll_seconds=options["poll_interval"],
    )
    with _login_errors():
        check_target(path, options["force"], "qwen")
        _say(qwen.TERMS)
        credentials = qwen.sign_in(flow, _say, Progress("Waiting for approval"))
        entry = qwen.account_entry(options["name"] or "qwen", str(path), flow)
        _finish_login(ctx, entry, credentials, path, options["print_only"])


@login.command("kiro")
@_login_options(None)
@click.option(
    "--from",
    "source_kind",
    type=click.Choice(["ide", "cli"]),
    default=None,
    help="Import the Kiro IDE's login or kiro-cli's (default: whichever exists, the IDE's first).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=None,
    help="The IDE's token file or kiro-cli's data.sqlite3, if not in the usual place.",
)
@click.option(
    "--base-url", envvar="LLMBRIDGE_LOGIN_BASE_URL", default=None, help="Kiro service endpoint for the account."
)
@click.pass_context
def login_kiro(ctx: click.Context, /, **options: Any) -> None:
    """Import a login made with the Kiro IDE or kiro-cli (social or IdC, with its client registration) into
    a token file of the bridge's own."""
    from llmbridge.login import bridge_credentials_path, check_target
    from llmbridge.providers.kiro import login as kiro

    name = options["name"] or "kiro"
    path = (options["out"] or bridge_credentials_path(name)).expanduser().absolute()
    with _login_errors():
        check_target(path, options["force"], "kiro")
        _say(kiro.TERMS)
        kind, source = kiro.choose_source(options["source_kind"], options["source"])
        imported = kiro.import_login(kind, source.expanduser())
        method = imported.token["authMethod"]
        _say(
            f"Imported the {method} login of {'the Kiro IDE' if kind == 'ide' else 'kiro-cli'} from {imported.source}."
        )
        for warning in imported.warnings:
            _say(f"Note: {warning}.")
        entry = kiro.account_entry(name, path, options["token_url"], options["base_url"])
        _finish_login(ctx, entry, imported.token, path, options["print_only"], imported.source)


def _given(**endpoints: str | None) -> dict[str, str]:
    """The endpoint overrides that were given (the others keep the real endpoints)."""
    return {name: value for name, value in endpoints.items() if value}


@contextmanager
def _login_errors() -> Iterator[None]:
    """A failed or cancelled login: one line, exit status 1, and nothing saved."""
    from llmbridge.login import LoginError

    try:
        yield
    except LoginError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        raise click.ClickException("login cancelled; nothing was saved") from None
