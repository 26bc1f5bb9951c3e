"""The non-image objects of a study: dose reports, key images, the report as SR and as PDF."""
