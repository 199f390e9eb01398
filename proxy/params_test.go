package proxy

import "testing"

func TestClientEncodingFollowsPostgreSQLNameCleaning(t *testing.T) {
	r := newParamRules("app.current_account_id", "public", nil)
	for _, enc := range []string{"SJIS", "ShiftJIS", "mskanji", "s.j.i.s", "Windows932", "BIG-5", "gb-18030", "GBK", "win_950", "UHC", "Johab", "shift_jis_2004", "made-up"} {
		if _, err := r.parseStartup(map[string]string{"client_encoding": enc}); err == nil {
			t.Errorf("client_encoding %q accepted", enc)
		}
	}
	for _, enc := range []string{"UTF8", "utf-8", "Unicode", "SQL_ASCII", "LATIN1", "iso-8859-1", "WIN1252", "EUC_JP"} {
		req, err := r.parseStartup(map[string]string{"client_encoding": enc})
		if err != nil || req.Params["client_encoding"] != enc {
			t.Errorf("client_encoding %q refused: %v", enc, err)
		}
	}
}

func TestStartupParameterGivenTwiceIsRefused(t *testing.T) {
	r := newParamRules("app.current_account_id", "public", nil)
	if _, err := r.parseStartup(map[string]string{"jwt": "a", "JWT": "b"}); err == nil {
		t.Fatal("jwt and JWT were both accepted; the token would depend on map order")
	}
	if _, err := r.parseStartup(map[string]string{"TimeZone": "UTC", "timezone": "UTC"}); err == nil {
		t.Fatal("a setting given twice in different case was accepted")
	}
}
