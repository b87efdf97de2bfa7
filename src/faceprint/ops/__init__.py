"""Operating a deployment: ``faceprint migrate`` (an embedded home to PostgreSQL, without
re-embedding), ``faceprint backup`` / ``restore`` (both kinds) and ``faceprint doctor`` (versions,
reachability, index freshness, model files, disk, modes). See docs/scale.md, "Moving, backing up,
checking"."""
