"""The open vehicle interface: VSS 6.0 signals over VISS v2 (WebSocket and HTTP) for any app the owner consents to.

`hub.SignalHub` is the seam the BMS runtime uses; `server.serve` runs the interface;
`auth.Authority` issues and checks the owner's grants; `store.Store` keeps what must
survive a restart.
"""
