CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<200000)
  INSERT INTO t SELECT x, printf('name-%08d', (x*7919)%200000), x*0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(v), min(name), max(name) FROM t;
SELECT substr(name,6,2) k, count(*), avg(v) FROM t GROUP BY k ORDER BY k LIMIT 5;
