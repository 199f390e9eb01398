<?php
// Eloquent (Debian's illuminate/database, Capsule without Laravel): models
// with hasMany/belongsTo, create/save/delete defaults, with() eager loads and
// lazy relations, transactions with nested savepoints, the schema builder's
// introspection.
require __DIR__ . '/common.php';
require_once 'Illuminate/Database/autoload.php';

use Illuminate\Database\Capsule\Manager as Capsule;
use Illuminate\Database\Eloquent\Model;

class Order extends Model
{
    protected $table = 'orders';
    public $timestamps = false;
    protected $guarded = [];

    public function items()
    {
        return $this->hasMany(LineItem::class, 'order_id');
    }
}

class LineItem extends Model
{
    protected $table = 'line_items';
    public $timestamps = false;
    protected $guarded = [];

    public function order()
    {
        return $this->belongsTo(Order::class, 'order_id');
    }
}

class Customer extends Model
{
    protected $table = 'customers';
    public $timestamps = false;
    protected $guarded = [];
}

$rep = new Report('eloquent', trim((string)shell_exec("dpkg-query -W -f='\${Version}' php-illuminate-database 2>/dev/null")) ?: 'unknown');
$db = null;
$rep->op('connect', 'app', function () use (&$db, $rep) {
    $capsule = new Capsule();
    $capsule->addConnection(['driver' => 'pgsql', 'host' => Env::get('PGT_HOST', '127.0.0.1'), 'port' => Env::get('PGT_PORT', '5432'),
        'database' => Env::get('PGT_DB', 'app'), 'username' => Env::get('PGT_USER', 'tester'), 'password' => Env::get('PGT_PASSWORD', ''),
        'charset' => 'utf8', 'prefix' => '', 'schema' => 'public', 'sslmode' => 'disable', 'application_name' => 'clients-eloquent']);
    $capsule->setAsGlobal();
    $capsule->bootEloquent();
    $db = $capsule->getConnection();
    $db->select('SELECT 1');
    $rep->mark = fn(string $q) => $db->select($q);
    return null;
});
if ($db !== null) {
    $tenant = fn() => Order::where('account_id', $T);
    $rep->op('read.scoped', 'app', fn() => $tenant()->orderBy('id')->get()->toArray());
    $o = null;
    $rep->op('model.create', 'app', function () use (&$o, $T) {
        $o = Order::create(['account_id' => $T, 'total' => '12.5', 'note' => 'eloquent']);
        return [$o->toArray()];
    });
    $oid = $o ? (int)$o->id : 1;
    $rep->op('query.update_scoped', 'app', fn() => $tenant()->where('id', $oid)->update(['note' => 'eloquent bulk']));
    $rep->op('tx.savepoint', 'app', fn() => $db->transaction(function () use ($db, $T, $oid) {
        $c = Customer::create(['account_id' => $T, 'name' => 'eloquent customer']);
        try {
            $db->transaction(fn() => LineItem::create(['account_id' => $T, 'order_id' => $oid, 'sku' => 'BAD', 'qty' => -1]));
        } catch (Illuminate\Database\QueryException $e) {
        }
        $li = $db->transaction(fn() => LineItem::create(['account_id' => $T, 'order_id' => $oid, 'sku' => 'SKU-EL', 'qty' => 2]));
        return [$c->toArray(), $li->toArray()];
    }));
    $rep->op('introspect.schema', 'app', fn() => [Capsule::schema()->hasTable('orders'), Capsule::schema()->getColumnListing('orders')]);
    $rep->op('query.delete_scoped', 'app', fn() => LineItem::where('account_id', $T)->where('order_id', $oid)->delete());
    $rep->op('assoc.with_eager', 'unpinned', fn() => $tenant()->with('items')->orderBy('id')->get()->toArray()); // items: WHERE order_id IN (..)
    $rep->op('assoc.lazy_has_many', 'unpinned', fn() => $tenant()->where('id', 1001)->first()->items->toArray());
    $rep->op('assoc.lazy_belongs_to', 'unpinned', fn() => [LineItem::where('account_id', $T)->where('id', 1)->first()->order->toArray()]);
    $rep->op('model.save_default', 'unpinned', function () use ($tenant, $oid) {
        $x = $tenant()->where('id', $oid)->first();
        $x->note = 'eloquent saved';
        $x->save(); // update "orders" set "note" = ? where "id" = ?
        return [$x->toArray()];
    });
    $rep->op('model.find_by_pk', 'unpinned', fn() => [Order::find(1)->toArray()]);
    $rep->op('model.delete_default', 'unpinned', function () use ($T) {
        $c = Customer::where('account_id', $T)->orderBy('id', 'desc')->first();
        $c->delete(); // delete from "customers" where "id" = ?
        return [$c->account_id];
    });
    $rep->op('unscoped.all', 'unscoped', fn() => Order::orderBy('id')->get(['id', 'account_id'])->toArray());
    $rep->op('cross.where', 'cross', fn() => Order::where('account_id', $O)->get()->toArray());
    $rep->op('cross.update', 'cross', fn() => Order::where('account_id', $O)->update(['note' => 'x']));
    $rep->op('cross.create', 'cross', fn() => [Order::create(['id' => 990052, 'account_id' => $O, 'total' => 1])->toArray()]);
}
$rep->dump();
