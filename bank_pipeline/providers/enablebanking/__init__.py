"""Enable Banking's API (api.enablebanking.com): an RS256 JWT per call, sessions for consents,
paginated transactions. See `client.EnableBankingClient` and `provider.EnableBankingProvider`."""
