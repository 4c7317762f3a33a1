"""`llava-pose view`: a local browser for generated datasets and benchmarks, with keypoint
overlays.

Python reads the data once and writes a static site (`site.write_site`): ``index.html``,
``view.js`` and ``view.css`` (package data, ``llava_pose/data/view/``) and ``data/*.js``
shards. The page fetches only what it shows, so a 200k-record dataset opens as fast as a
small one:

* ``data/manifest.js``   counts, facets (with counts), sorts, the skeleton's limbs and colours;
* ``data/rows/N.js``     the list, `ROWS_PER_SHARD` rows per file, in file order;
* ``data/pages/N.js``    one detail page per image (context, persons, every item), hashed into
  buckets by image path (`bucket_of`, FNV-1a; ``view.js`` computes the same), so a link
  ``#image=val2017/000000034417.jpg`` finds its file without any lookup table;
* ``data/columns.js``    per row, one code for its facet values and its sort keys: loaded on
  the first filter or sort, then filtering 200k rows is a loop over an array;
* ``data/text/N.js``     the lowercased searchable text, `TEXT_PER_SHARD` rows per file.

Search is a scan of the text shards, in order, streaming matches into the list as it goes
(substring match of every word of the query). It was chosen over an inverted index because the
index of 200k generated records is larger than the text it indexes (every record repeats much
of the same vocabulary), takes minutes of Python to build, and cannot answer substrings; a
scan needs no build step beyond writing the text once, finds the first page of matches of a
common word at once, and counts the rest in the background.

Every shard is a script calling ``LPV.put(name, data)`` (JSONP), not JSON: a page opened from
``file://`` may not fetch() local files in Chromium, and one loader serves both the server and
the export. Data reaches the DOM only through ``textContent`` and attributes, never markup.
"""
