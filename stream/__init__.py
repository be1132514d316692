"""Live ZeroMQ chain: frame grabber -> despeckler -> publisher, and a subscriber client.

* ``protocol``: the wire format (``encode_frame``, ``decode_frame``, ``ProtocolError``); PROTOCOL.md
* ``sources``: what ``--source`` names: sim, capture devices, files, folders, DICOM, streams
* ``roi``: scanner screens, despeckling the grey image region only (pure array functions)
* ``stages``: the thread bodies: grab, receive, despeckle, publish
* ``pipeline``: ``run_chain`` and ``run_grabber``: stages, sockets, signals, the status line
* ``transport``: ZeroMQ sockets set up for live video (high-water marks, heartbeats, reconnects)
* ``security``: CURVE keys and the authenticator
* ``sinks``: recording, OpenIGTLink server, preview window
* ``client``: ``Subscriber`` for navigation software
* ``latest``: the one-item "latest frame wins" hand-over
* ``stats``: counters, percentiles and the status line
* ``config``, ``cli``: frozen configs and the shared command-line flags
* ``run``, ``grabber``, ``despeckler``, ``keys``: the ``python -m stream.*`` tools
"""
