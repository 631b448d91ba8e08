"""One module or package per studio tab; each exposes ``create_<name>_tab(ctx, ...)`` building its
widgets in the current ``gr.Tab`` and returning the widgets other tabs or tests need. ``studio.app``
assembles them."""
