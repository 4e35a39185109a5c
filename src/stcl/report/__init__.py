"""Pictures of results: overlays of label maps on frames, training curves, qualitative views, the HTML page.

* `stcl.report.overlay` — colour a label map with the label-PNG palette, blend it over a frame, legend.
* `stcl.report.curves` — training curves of every stage from its dvclive TSVs (+ the val mIoU point).
* `stcl.report.qualitative` — per val video: frame | GT | prediction | error strip, animated GIF, flicker view.
* `stcl.report.page` — the figures and tables of a run in one static HTML page (`stcl report`).
"""
