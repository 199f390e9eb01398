SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS x int), generate_series(1, 3) AS g(n), LATERAL (SELECT n) l
