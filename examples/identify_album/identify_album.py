"""Build a face database from PEOPLE_DIR and name the people in every photo of ALBUM_DIR."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from facekit.database import Database
from facekit.gallery import build_index
from facekit.identify import identify_paths
from facekit.imageio import iter_image_paths
from facekit.pipeline import PipelineConfig


def main(people_dir: str, album_dir: str) -> None:
    db_path = Path(tempfile.gettempdir()) / "facekit-example.db"
    report = build_index(people_dir, db_path, PipelineConfig())  # incremental on re-runs
    print(f"{report.persons} people, {report.faces} faces (threshold {report.calibration.threshold:.2f})")
    db = Database.open(db_path)
    for photo in identify_paths(db, list(iter_image_paths([album_dir]))):
        names = [m.identity.name or m.identity.person if m.identity else "unknown" for m in photo.matches]
        print(f"{photo.result.source}: {', '.join(names) or 'no face'}")


if __name__ == "__main__":  # needed: worker processes re-import this module
    main(*sys.argv[1:3])
