#!/usr/bin/env python3
"""Write the karmor-host(8) man page from the click command tree.

Every command and option comes from the same click objects that `karmor-host --help` prints,
so the page cannot drift from the program. The hand-written parts (files, signals, examples)
are about the packaged installation.

    python3 tools/gen-manpage.py [-o karmor-host.8]

Run from a source checkout (the repository root is put on sys.path). The date on the page is
taken from SOURCE_DATE_EPOCH when set, so package builds are reproducible.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from karmor_host import __version__  # noqa: E402
from karmor_host.cli import main as cli_main  # noqa: E402

PROG = "karmor-host"
SECTION = "8"


def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens (so they stay minus signs in options and
    paths), and a leading dot or quote that would otherwise start a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def paragraphs(help_text: str) -> list[str]:
    """click help text -> paragraphs, with click's \\b (no-rewrap) markers dropped."""
    out = []
    for block in (help_text or "").strip().split("\n\n"):
        block = block.replace("\b\n", "").strip()
        if block:
            out.append(" ".join(line.strip() for line in block.splitlines()))
    return out


def options_section(cmd: click.Command, ctx: click.Context) -> list[str]:
    lines: list[str] = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{esc(names)}\\fR"]
        lines.append(esc(help_text) if help_text else "")
    return lines


def walk(cmd: click.Command, ctx: click.Context, path: list[str]) -> list[tuple[list[str], click.Command, click.Context]]:
    """(command words, command, context) for every leaf and group below cmd, depth first."""
    found = [(path, cmd, ctx)]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
            found += walk(sub, sub_ctx, path + [name])
    return found


FILES = [
    ("/etc/karmor/karmor-host.yaml", "The configuration (a conffile: local changes survive upgrades). "
     "Every key is optional; an unknown key or a bad value refuses to start."),
    ("/etc/karmor/policies/", "The watched policy directory: every *.yaml file in it holds KubeArmorHostPolicy "
     "documents. Files must be owned by root and not writable by group or others. "
     "The package installs none; examples are in /usr/share/doc/karmor-host/examples/."),
    ("/run/karmor/status.json", "The running agent's state, read by karmor-host status."),
    ("/var/lib/karmor/", "Agent state kept across restarts (removed on purge)."),
    ("/usr/lib/karmor-host/bpf/", "The compiled BPF objects the agent loads (KARMOR_BPF_DIR overrides)."),
    ("/sys/fs/bpf/karmor/", "BPF objects an enforcer pins so that enforcement survives a restart."),
]

EXAMPLES = [
    ("Install a policy and watch its alerts:",
     "cp /usr/share/doc/karmor-host/examples/audit-shadow-reads.yaml /etc/karmor/policies/\n"
     "karmor-host status\n"
     "journalctl -u karmor-host KARMOR_POLICY_NAME=audit-shadow-reads -o verbose\n"
     "karmor-host logs -f --policy audit-shadow-reads"),
    ("Check policy files before installing them:",
     "karmor-host policy validate my-policies/*.yaml\n"
     "karmor-host policy show my-policies/*.yaml"),
]


def render(date: str) -> str:
    root_ctx = click.Context(cli_main, info_name=PROG, **cli_main.context_settings)
    out = [
        f'.TH {esc(PROG.upper())} {SECTION} "{date}" "{PROG} {__version__}" "System Administration"',
        ".SH NAME",
        f"{esc(PROG)} \\- runtime security agent enforcing KubeArmorHostPolicy on Linux hosts",
        ".SH SYNOPSIS",
    ]
    entries = walk(cli_main, root_ctx, [PROG])
    for words, cmd, ctx in entries:
        if isinstance(cmd, click.Group) and words != [PROG]:
            continue
        pieces = " ".join(cmd.collect_usage_pieces(ctx))
        out += [".B " + esc(" ".join(words)), esc(pieces), ".br"]
    out += [".SH DESCRIPTION"]
    for para in paragraphs(cli_main.help or ""):
        out += [".PP", esc(para)]
    out += [
        ".PP",
        esc("The agent (karmor-host run) is started by systemd as karmor-host.service. It watches "
            "/etc/karmor/policies/, compiles the policies that apply to this host into one rule set, "
            "hands it to the best enforcer the kernel offers (BPF-LSM, AppArmor, SELinux, or none: "
            "alerts only, Block rules reported as \"Audit (Block)\"), watches process, file, network "
            "and capability events with eBPF programs, and writes alerts to the journal with "
            "KARMOR_* fields."),
        ".SH GLOBAL OPTIONS",
    ]
    out += options_section(cli_main, root_ctx)
    out += [".SH COMMANDS"]
    for words, cmd, ctx in entries[1:]:
        if isinstance(cmd, click.Group):
            out += [".SS " + esc(" ".join(words[1:]))]
            for para in paragraphs(cmd.help or ""):
                out += [".PP", esc(para)]
            continue
        out += [".SS " + esc(" ".join(words[1:] + cmd.collect_usage_pieces(ctx)))]
        for para in paragraphs(cmd.help or ""):
            out += [".PP", esc(para)]
        opts = options_section(cmd, ctx)
        if opts:
            out += [".PP", "Options:", ".RS"] + opts + [".RE"]
    out += [
        ".SH SIGNALS",
        ".TP", "\\fBSIGHUP\\fR",
        esc("Re-read the configuration and every policy file (systemctl reload karmor-host). "
            "A bad configuration is refused and the running one kept."),
        ".TP", "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
        esc("Stop: detach the monitor, flush the sinks, write a final status."),
        ".SH FILES",
    ]
    for path, text in FILES:
        out += [".TP", "\\fI" + esc(path) + "\\fR", esc(text)]
    out += [".SH EXAMPLES"]
    for title, code in EXAMPLES:
        out += [".PP", esc(title), ".PP", ".nf", ".RS", esc(code), ".RE", ".fi"]
    out += [
        ".SH EXIT STATUS",
        esc("0 on success; 1 when policy validation finds errors; 2 for a bad configuration; "
            "3 when karmor-host status finds no running agent."),
        ".SH SEE ALSO",
        "\\fBjournalctl\\fR(1), \\fBsystemctl\\fR(1), \\fBapparmor\\fR(7), \\fBbpf\\fR(2)",
        ".PP",
        esc("/usr/share/doc/karmor-host/ for the configuration reference and the policy language."),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = ap.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    text = render(date)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
