import pytest
@pytest.mark.parametrize("i", range(15))
async def test_probe(client, seed, backend, i):
    auth = await seed.api_key()
    await seed.transaction("25.000", "KWD")
    s = await seed.snapshot()
    r = await client.post("/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "-1"}, headers=auth)
    assert s == await seed.snapshot()
