<?php
// PDO (pdo_pgsql): exceptions mode, native (server-side) prepared
// statements and emulated ones, transactions with savepoints, the driver's
// lastInsertId and information_schema introspection.
require __DIR__ . '/common.php';

$rep = new Report('pdo', PHP_VERSION);
$pdo = null;
$rep->op('connect', 'app', function () use (&$pdo, $dsn, $rep) {
    $pdo = new PDO($dsn, Env::get('PGT_USER', 'tester'), Env::get('PGT_PASSWORD', ''), [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC, PDO::ATTR_EMULATE_PREPARES => false]);
    $rep->mark = fn(string $q) => $pdo->query($q)->fetchAll();
    return null;
});
if ($pdo !== null) {
    $q = function (string $sql, array $args = []) use ($pdo) {
        $st = $pdo->prepare($sql);
        $st->execute($args);
        return $st->columnCount() > 0 ? $st->fetchAll() : $st->rowCount();
    };
    $rep->op('read.scoped', 'app', fn() => $q('SELECT id, account_id, total, note FROM orders WHERE account_id = ? ORDER BY id', [$T]));
    $ins = $rep->op('crud.insert', 'app', fn() => $q('INSERT INTO orders (account_id, total, note) VALUES (?, ?, ?) RETURNING id, account_id', [$T, '12.5', 'pdo']));
    $oid = $ins['ok'] ? (int)$ins['rows'][0]['id'] : 1;
    $rep->op('crud.update', 'app', fn() => $q('UPDATE orders SET note = ? WHERE account_id = ? AND id = ? RETURNING id, account_id, note', ['pdo updated', $T, $oid]));
    $rep->op('prepared.reuse', 'app', function () use ($pdo, $T, $oid) {
        $st = $pdo->prepare('SELECT id, account_id FROM orders WHERE account_id = :t AND id = :id');
        $out = [];
        foreach ([1, $oid] as $id) {
            $st->bindValue(':t', $T, PDO::PARAM_INT);
            $st->bindValue(':id', $id, PDO::PARAM_INT);
            $st->execute();
            $out = array_merge($out, $st->fetchAll());
        }
        return $out;
    });
    $rep->op('prepared.emulated', 'app', function () use ($pdo, $T) {
        $pdo->setAttribute(PDO::ATTR_EMULATE_PREPARES, true);
        try {
            $st = $pdo->prepare('SELECT id, account_id FROM orders WHERE account_id = ? ORDER BY id');
            $st->execute([$T]);
            return $st->fetchAll();
        } finally {
            $pdo->setAttribute(PDO::ATTR_EMULATE_PREPARES, false);
        }
    });
    $rep->op('tx.savepoint', 'app', function () use ($pdo, $q, $T, $oid) {
        $pdo->beginTransaction();
        try {
            $c = $q('INSERT INTO customers (account_id, name) VALUES (?, ?) RETURNING id, account_id', [$T, 'pdo customer']);
            $pdo->exec('SAVEPOINT sp1');
            try {
                $q("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, 'BAD', -1)", [$T, $oid]);
            } catch (PDOException $e) {
                $pdo->exec('ROLLBACK TO SAVEPOINT sp1');
            }
            $li = $q("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, 'SKU-PDO', 2) RETURNING id, account_id", [$T, $oid]);
            $pdo->commit();
            return array_merge($c, $li);
        } catch (Throwable $e) {
            $pdo->rollBack();
            throw $e;
        }
    });
    $rep->op('lastInsertId', 'app', function () use ($pdo, $q, $T, $oid) {
        $q("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, 'SKU-LID', 1)", [$T, $oid]);
        return [$pdo->lastInsertId('line_items_id_seq')];
    });
    $rep->op('introspect.columns', 'app', fn() => $q("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ? ORDER BY ordinal_position", ['orders']));
    $rep->op('assoc.join', 'app', fn() => $q('SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = ? ORDER BY o.id, l.id', [$T]));
    $rep->op('crud.delete', 'app', fn() => $q('DELETE FROM line_items WHERE account_id = ? AND order_id = ? RETURNING id, account_id', [$T, $oid]));
    $rep->op('unpinned.update_by_id', 'unpinned', fn() => $q("UPDATE orders SET note = 'by id' WHERE id = ? RETURNING id, account_id, note", [$oid]));
    $rep->op('unscoped.select', 'unscoped', fn() => $q('SELECT id, account_id FROM orders ORDER BY id'));
    $rep->op('cross.select', 'cross', fn() => $q('SELECT id, account_id FROM orders WHERE account_id = ?', [$O]));
    $rep->op('cross.update', 'cross', fn() => $q("UPDATE orders SET note = 'x' WHERE account_id = ?", [$O]));
    $rep->op('cross.insert', 'cross', fn() => $q('INSERT INTO orders (id, account_id, total) VALUES (990051, ?, 1)', [$O]));
}
$rep->dump();
