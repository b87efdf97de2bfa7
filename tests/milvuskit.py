"""A real Milvus server for the tests: Milvus 2.3.5 standalone from the ``milvus`` package (milvus-io's
embedded server: the ``milvus`` binary and its libraries ship in the wheel), its data, logs and
configuration in a temporary folder, its ports free ones (19530 and up for clients). Started once a
session, by the first test that asks for it (starting takes 10 to 30 s), and stopped at the
session's end.

Use the ``milvus_url`` fixture (``from milvuskit import milvus_url  # noqa: F401`` in a test module)
for the server's ``milvus://127.0.0.1:PORT``. (Not ``tests/milvus.py``: the tests folder is on
``sys.path``, and that name would hide the ``milvus`` package.)

The package's configuration leaves Milvus's embedded etcd on its fixed ports (2379, 2380), so a
second server on the machine (a benchmark's, another test run's) would fail to start: ``start``
gives the embedded etcd free ports of its own through an etcd configuration file.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(folder: Path) -> Any:
    """A started ``milvus.MilvusServer`` with its data under ``folder`` (call ``.stop()``; its
    client port is ``.listen_port``)."""
    import milvus

    folder.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(), free_port()
    etcd = folder / "embed-etcd.yaml"
    etcd.write_text(f"name: faceprint\nlisten-client-urls: http://127.0.0.1:{client}\n"
                    f"advertise-client-urls: http://127.0.0.1:{client}\n"
                    f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
                    f"initial-cluster: faceprint=http://127.0.0.1:{peer}\n")
    template = Path(milvus.__file__).parent / "data" / "config.yaml.template"
    text = template.read_text().replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd}\n", 1)
    assert str(etcd) in text, "the milvus package's configuration template changed"
    ours = folder / "milvus.yaml.template"
    ours.write_text(text)
    config = milvus.MilvusServerConfig(template=str(ours), data_dir=str(folder / "server"), etcd_port=client)
    config.glog_conf_file = str(template.parent / "glog.conf")  # set only when it reads its own template
    server = milvus.MilvusServer(config)
    server.start()  # waits until its health check answers OK
    return server


@pytest.fixture(scope="session")
def milvus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``milvus://127.0.0.1:PORT`` of a Milvus server started for this session."""
    server = start(tmp_path_factory.mktemp("milvus"))
    try:
        yield f"milvus://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()
