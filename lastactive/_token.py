"""``lastactive token create|list|revoke``: the collector's auth file, as ``coder tokens`` and
``jupyterhub token`` manage theirs. A new token is printed once; only its hash is stored.
A running ``lastactive serve`` picks changes up on SIGHUP."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lastactive.conventions import ENV_AUTH_FILE

__all__ = ["token_command"]


def token_command(args: argparse.Namespace) -> int:
    """Exit status 0, or 2 when the auth file is not given or cannot be used (the message
    says why)."""
    from lastactive.collector._auth import (
        AuthFileError,
        Scope,
        create_credential,
        read_auth_file,
        revoke_credential,
    )

    where = args.auth_file or os.environ.get(ENV_AUTH_FILE)
    if not where:
        print(f"lastactive token: give --auth-file FILE (or {ENV_AUTH_FILE})", file=sys.stderr)
        return 2
    path = Path(where)
    try:
        if args.action == "create":
            entry, token = create_credential(
                path,
                (Scope(s) for s in args.scope),
                name=args.name,
                certificate=args.certificate,
                host=args.host,
                session_prefixes=args.session_prefixes,
                agents=args.agents,
            )
            if token is None:
                print(f"granted {entry.name}: {', '.join(sorted(entry.scopes))}")
            else:
                print(token)
                print(
                    f"created {entry.name} ({', '.join(sorted(entry.scopes))}); the token is "
                    "shown only now. Reload a running collector: kill -HUP <pid>",
                    file=sys.stderr,
                )
        elif args.action == "list":
            print(f"{'NAME':<24} {'ID':<12} {'KIND':<11} {'SCOPES':<16} {'CREATED':<20} BOUND TO")
            for c in read_auth_file(path):
                kind = "certificate" if c.certificate else "token"
                bound = ", ".join(
                    [f"host {c.host}"] * bool(c.host)
                    + [f"sessions {p}*" for p in c.session_prefixes]
                    + [f"agent {a}" for a in c.agents]
                )
                scopes = ",".join(sorted(c.scopes))
                print(f"{c.name:<24} {c.id:<12} {kind:<11} {scopes:<16} {c.created:<20} {bound}")
        else:
            gone = revoke_credential(path, args.name)
            print(f"revoked {gone.name}; reload a running collector: kill -HUP <pid>")
    except AuthFileError as exc:
        print(f"lastactive token: {exc}", file=sys.stderr)
        return 2
    return 0
