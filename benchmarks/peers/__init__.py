"""jobarbiter beside other Python job libraries, on the same machine and workloads.

``python -m benchmarks.peers`` runs no-op and sleep jobs, and a worker killed
mid-job, through jobarbiter, Celery, Dramatiq, RQ and Huey (Redis), procrastinate
and PgQueuer (PostgreSQL) and a bare ProcessPoolExecutor.

Layout: ``harness`` is the one runner (reset, start, warm up, measure, kill,
always stop); ``marks`` holds what every job does and how completions are
counted; each ``*_peer`` module holds one library's tasks and its ``Peer``
adapter; ``report`` prints and ``__main__`` is the command line.
"""

LIBRARIES: dict[str, str] = {
    "jobarbiter": "benchmarks.peers.jobarbiter_peer:JobarbiterPeer",
    "jobarbiter-postgres": "benchmarks.peers.jobarbiter_peer:JobarbiterPostgresPeer",
    "celery": "benchmarks.peers.celery_peer:CeleryPeer",
    "dramatiq": "benchmarks.peers.dramatiq_peer:DramatiqPeer",
    "rq": "benchmarks.peers.rq_peer:RqPeer",
    "huey": "benchmarks.peers.huey_peer:HueyPeer",
    "procrastinate": "benchmarks.peers.procrastinate_peer:ProcrastinatePeer",
    "pgqueuer": "benchmarks.peers.pgqueuer_peer:PgqueuerPeer",
    "futures": "benchmarks.peers.futures_peer:FuturesPeer",
}
