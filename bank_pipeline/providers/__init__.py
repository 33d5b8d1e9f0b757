"""Bank providers behind one seam (`base.BankProvider`): fetch is the only stage that should know
who the bank is. TrueLayer's client lives in `bank_pipeline.truelayer`; Enable Banking's here."""
