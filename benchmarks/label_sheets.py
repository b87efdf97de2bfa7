"""Contact sheets for labelling LFW dev faces by eye (benchmarks/labels/lfw-dev-attributes.csv).

Each sheet is a grid of numbered tiles: LFW's central face region (LFW centres the face in its
250x250 images), enlarged so eyes, lips and chin are visible. Images come in a fixed seeded order,
so sheet N always shows the same faces:

    python benchmarks/label_sheets.py --out /tmp/sheets --first 0 --count 10
    python benchmarks/label_sheets.py --out /tmp/sheets --scan --first 0 --count 5   # small tiles, for
                                                                                     # hunting rare classes

``--list`` prints the images of the given sheets (sheet, tile, image) so the labeller can copy
the paths next to the labels.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import cv2
import numpy as np

LFW_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "lfw-dev" / "images"
SEED = 11
CROP = (55, 40, 195, 200)  # x0, y0, x1, y1 in LFW's 250x250 frame: forehead to chin, ear to ear


def ordered_images(root: Path = LFW_IMAGES, seed: int = SEED) -> list[str]:
    """Every LFW dev image (path under images/) in the fixed seeded order labels are taken from."""
    names = sorted(str(p.relative_to(root)) for p in root.glob("*/*.jpg"))
    random.Random(seed).shuffle(names)
    return names


def tile(path: Path, size: int, number: int) -> np.ndarray:
    """The central face region of one image, enlarged to ``size`` wide, with its number."""
    image = cv2.imread(str(path))
    x0, y0, x1, y1 = CROP
    crop = image[y0:y1, x0:x1]
    height = round(size * (y1 - y0) / (x1 - x0))
    out = cv2.resize(crop, (size, height), interpolation=cv2.INTER_CUBIC)
    scale = max(0.5, size / 240)
    cv2.rectangle(out, (0, 0), (int(44 * scale), int(26 * scale)), (0, 0, 0), -1)
    cv2.putText(out, str(number), (3, int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 255, 255), 2)
    return out


def sheet(paths: list[Path], columns: int, size: int, first_number: int = 0) -> np.ndarray:
    """A grid of tiles (numbered from ``first_number``) with a 4 px white gutter."""
    tiles = [tile(p, size, first_number + i) for i, p in enumerate(paths)]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (h + 4), columns * (w + 4), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = t
    return grid


def draw_picks(picks: Path, out: Path) -> None:
    """Full-size sheets (20 tiles) of picked face numbers, each tile keeping its number in the order."""
    names = ordered_images()
    numbers = [int(line.split("#")[0]) for line in picks.read_text().splitlines() if line.split("#")[0].strip()]
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(numbers), 20):
        chunk = numbers[start:start + 20]
        tiles = [tile(LFW_IMAGES / names[n], 200, n) for n in chunk]
        h, w = tiles[0].shape[:2]
        rows = -(-len(tiles) // 5)
        grid = np.full((rows * (h + 4), 5 * (w + 4), 3), 255, np.uint8)
        for i, t in enumerate(tiles):
            r, c = divmod(i, 5)
            grid[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = t
        cv2.imwrite(str(out / f"picks{start // 20:03d}.png"), grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sheets"))
    parser.add_argument("--first", type=int, default=0, help="first sheet number")
    parser.add_argument("--count", type=int, default=1, help="how many sheets")
    parser.add_argument("--scan", action="store_true", help="small tiles (8x6 a sheet) for hunting rare classes")
    parser.add_argument("--list", action="store_true", help="print sheet, tile, image instead of drawing")
    parser.add_argument("--picks", type=Path, help="a file of face numbers (one a line, # comments): full-size "
                        "sheets of those faces only, numbered as in the order (for labelling picked faces)")
    args = parser.parse_args()
    if args.picks:
        draw_picks(args.picks, args.out)
        return
    columns, rows, size, prefix = (8, 6, 120, "scan") if args.scan else (5, 4, 200, "sheet")
    per = columns * rows
    names = ordered_images()
    args.out.mkdir(parents=True, exist_ok=True)
    for n in range(args.first, args.first + args.count):
        chosen = names[n * per:(n + 1) * per]
        if not chosen:
            break
        if args.list:
            for i, name in enumerate(chosen):
                print(f"{prefix}{n:03d},{n * per + i},{name}")
            continue
        image = sheet([LFW_IMAGES / c for c in chosen], columns, size, n * per)
        cv2.imwrite(str(args.out / f"{prefix}{n:03d}.png"), image)


if __name__ == "__main__":
    main()
