"""The colours of label PNGs: the PASCAL VOC bit-interleaved colour map, index 255 (void) white.

Every label PNG stcl writes carries this palette (`stcl.infer.io.save_label_png`), and the run report draws
class ``c`` in ``palette[c]`` (`stcl.report.overlay`), so an overlay shows a class in the colour a PNG viewer
shows for its prediction file. The palette only affects how a file is shown, never the stored class ids.
"""

from __future__ import annotations

__all__ = ["label_palette"]


def label_palette() -> list[int]:
    """The 256-entry RGB palette of label PNGs (PASCAL VOC bit-interleaved colour map), flat list of 768 ints.

    Index 255 (void) is white so ignored pixels stand out.
    """
    palette: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    palette[255 * 3 : 256 * 3] = [255, 255, 255]
    return palette
