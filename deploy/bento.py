"""Build the Kiln Bento and lay it out as the context of the container image.

    .venv/bin/python -m deploy.bento [--output build/container/bento]   (or: make build)

The Bento holds the service (bentofile.yaml: ``service.bento:Kiln``, ``kiln/`` and
``service/``), its pinned Python packages (``requirements-serve.lock``) and the production
models, chosen exactly as the service chooses them at start-up
(:func:`service.models.select_models` with the ``KILN_SERVE_*`` settings of this
environment) from the store under ``$BENTOML_HOME``. ``bentoml build`` runs on a copy of
bentofile.yaml whose ``models:`` lists those tags; the Bento is then exported, models
included, as a directory: what ``deploy/docker/Dockerfile`` copies into the image. Prints the
Bento's tag; ``bento.tag`` beside the directory holds it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python deploy/bento.py` puts deploy/ first, not the root
    sys.path.insert(0, str(REPO))

from kiln.errors import KilnError  # noqa: E402
from kiln.store import StoredModel  # noqa: E402

__all__ = ["build_bento", "export_bento", "main", "production_models"]

DEFAULT_OUTPUT = REPO / "build" / "container" / "bento"
log = logging.getLogger("kiln.deploy")


def production_models() -> list[StoredModel]:
    """The models the service would serve from this store, with these settings."""
    from service.models import select_models
    from service.settings import load_settings

    models, problems = select_models(load_settings())
    if problems:  # an image would ship a model that cannot serve: refuse to build it
        raise KilnError("; ".join(p.message for p in problems))
    return models


def build_bento(models: list[StoredModel], bentofile: Path = REPO / "bentofile.yaml") -> str:
    """``bentoml build`` of ``bentofile`` with ``models:`` set to ``models``; the Bento's tag."""
    import bentoml

    config = yaml.safe_load(bentofile.read_text())
    config["models"] = [model.tag for model in models]
    # requirements-serve.lock is already a lock: BentoML's own re-locking (`uv pip compile`,
    # over the network) would only resolve the same pins again.
    config.setdefault("python", {})["lock_packages"] = False
    with tempfile.TemporaryDirectory(prefix="kiln-bentofile-") as tmp:
        derived = Path(tmp) / "bentofile.yaml"
        derived.write_text(yaml.safe_dump(config, sort_keys=False))
        bento = bentoml.bentos.build_bentofile(str(derived), build_ctx=str(REPO))
    return str(bento.tag)


def export_bento(tag: str, output: Path) -> Path:
    """Export ``tag`` with its models as the directory ``output`` (replaced as a whole)."""
    import bentoml

    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    bentoml.bentos.export_bento(tag, str(staging) + "/", output_format="folder")
    # The image's user (uid 1000) reads what root copies in: whatever this host's umask was.
    for root, dirs, files in os.walk(staging):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
        for name in files:
            path = Path(root) / name
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    (output.parent / "bento.tag").write_text(tag + "\n")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.bento",
        description="Build the Kiln Bento (service, pinned packages, production models) and "
        "export it as the container build context.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="directory to export the Bento to (default: build/container/bento)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

    try:
        models = production_models()
    except KilnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not models:
        home = os.environ.get("BENTOML_HOME", "~/bentoml")
        print(
            f"error: no production model in the store at {home}: train one (make train) "
            "or name them in KILN_SERVE_MODELS",
            file=sys.stderr,
        )
        return 1
    log.info("models: %s", ", ".join(model.tag for model in models))
    tag = build_bento(models)
    output = export_bento(tag, args.output)
    missing = [m.tag for m in models if not (output / "models" / m.tag.replace(":", "/")).is_dir()]
    if missing:
        print(f"error: the exported Bento lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    log.info("bento %s exported to %s", tag, output)
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
