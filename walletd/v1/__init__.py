"""walletd.v1: the v1 wire API, generated from protos/walletd/v1/wallet.proto.

Do not edit the ``*_pb2*`` modules; run ``scripts/gen_protos``. Only the rpc edge
and the thin client import them: everything else speaks walletd.domain objects.
"""
