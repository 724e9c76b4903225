"""`bptrain download` and `bptrain presets`: the data a run needs and the configs it ships with."""

from __future__ import annotations

import click

from .. import console
from ..config import DEFAULT_PRESET, preset_description, preset_names
from .options import EXIT_CODES, common_options, data_options


@click.command(name="download", epilog=EXIT_CODES)
@click.option(
    "--dataset",
    default="mnist",
    show_default=True,
    help="mnist, fashion-mnist, or idx (a folder of IDX files given by --data-dir).",
)
@data_options
@common_options
def download_command(
    dataset: str, data_dir: str | None, mirrors: tuple[str, ...], offline: bool
) -> None:
    """Fetch and verify a dataset; prints its folder and each file's SHA-256 and source."""
    from .. import data

    result = data.fetch(
        dataset, data_dir, mirrors=mirrors, offline=offline or None, quiet=console.OPTIONS.quiet
    )
    console.emit(result.to_record())
    console.log.info(f"{result.dataset}: four files verified in {result.folder}")


@click.command(name="presets")
@common_options
def presets_command() -> None:
    """List the preset configs shipped with bptrain (one JSON line)."""
    names = preset_names()
    descriptions = {name: preset_description(name) for name in names}
    console.emit(
        {
            "event": "presets",
            "default": DEFAULT_PRESET,
            "presets": names,
            "descriptions": descriptions,
        }
    )
    for name in names:
        console.log.info(f"{name:<10} {descriptions[name]}")
