"""Host side of the `selinux` guest: the policy store it loads, built before the boot.

Under TCG, `semodule -i` against Debian's full refpolicy store (~330 modules) takes about a
minute; the SELinux enforcer runs semodule on every change. So the guest gets a copy of the
host's store reduced to the modules the base policy cannot do without (base needs getty,
unconfined, xdg and xserver: its seusers names xserver's roles), built here with
`semodule -p ROOT -n` in a few seconds. The guest's setup-selinux.sh copies it onto tmpfs over
/etc/selinux and /var/lib/selinux (never a store on 9p: it is mounted sync) and loads it.
Everything karmor's module needs is in those modules: kernel_t, unconfined_t, the file types.
The enforcer's policy facts for that store (a pass over every rule with setools: a second here,
twenty under TCG) are read here too and put in the guest's state directory by the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

KEEP = ("base", "getty", "unconfined", "xdg", "xserver")
# What only virtme's guest needs: its kernel modules come from the host's root over 9p, which
# keeps no labels (unlabeled_t), and the kernel's module autoload (nf_tables for the agent's
# firewall, inet_diag for its monitor) runs as kernel_t. On a real host they are modules_object_t.
GLUE = "karmorvm"
GLUE_CIL = "(allow kernel_t unlabeled_t (system (module_load)))\n"
STORE_DIR = "selinux-store"
FACTS_DIR = "selinux-facts"  # the enforcer's policy facts for this store, read here, not under TCG
FACT_TYPES = ("tmpfs_t", "unlabeled_t")  # the original types of the guest tests' files
STORE_TAR = "selinux-store.tar"  # one file for the guest to read: every 9p request is slow under TCG


class StoreError(Exception):
    pass


def build(workdir: Path) -> Path:
    """<workdir>/selinux-store.tar holding etc/selinux and var/lib/selinux: the reduced store."""
    root = workdir / STORE_DIR
    if root.exists():
        shutil.rmtree(root)
    for src in ("/etc/selinux", "/var/lib/selinux"):
        if not Path(src).is_dir():
            raise StoreError(f"{src} missing: the SELinux guest needs selinux-policy-default (`make deps`)")
        shutil.copytree(src, root / src.lstrip("/"), symlinks=True)
    modules = root / "var/lib/selinux/default/active/modules/100"
    drop = sorted(p.name for p in modules.iterdir() if p.name not in KEEP)
    glue = workdir / f"{GLUE}.cil"
    glue.write_text(GLUE_CIL)
    args = ["semodule", "-p", str(root), "-n", "-X", "100"]
    for name in drop:
        args += ["-r", name]
    args += ["-X", "400", "-i", str(glue)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise StoreError(f"building the reduced SELinux store failed: {proc.stderr.strip()}")
    from karmor_host.enforce.selinux import policyfacts

    facts = workdir / FACTS_DIR
    shutil.rmtree(facts, ignore_errors=True)
    policyfacts.read(policyfacts.policy_file(root), FACT_TYPES, cache_dir=facts,
                     key=policyfacts.store_key(root / "var/lib/selinux/default/active"))
    with tarfile.open(workdir / STORE_TAR, "w") as tar:
        for top in ("etc/selinux", "var/lib/selinux"):
            tar.add(root / top, arcname=top)
    shutil.rmtree(root)
    return workdir / STORE_TAR
