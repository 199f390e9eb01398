<?php
// Shared reporting for the PHP programs of pgtenant's client matrix
// (../README.md): the PGT_* environment, operations preceded by the marker
// statement, the JSON report.

final class Env
{
    public static function get(string $k, string $d): string
    {
        $v = getenv($k);
        return ($v === false || $v === '') ? $d : $v;
    }
}

final class Report
{
    /** @var array<int, array<string, mixed>> */
    private array $ops = [];
    /** @var callable|null runs the marker statement */
    public $mark = null;

    public function __construct(private string $client, private string $version)
    {
    }

    public static function sqlstate(\Throwable $e): string
    {
        for ($x = $e; $x !== null; $x = $x->getPrevious()) {
            if ($x instanceof \PDOException && is_array($x->errorInfo) && isset($x->errorInfo[0]) && preg_match('/^[0-9A-Z]{5}$/', (string)$x->errorInfo[0])) {
                return (string)$x->errorInfo[0];
            }
            if (preg_match('/^[0-9A-Z]{5}$/', (string)$x->getCode())) {
                return (string)$x->getCode();
            }
        }
        return '';
    }

    /** Runs $fn (returning the rows it read or changed) as operation $name. */
    public function op(string $name, string $kind, callable $fn): array
    {
        if ($this->mark !== null) {
            try {
                ($this->mark)("SELECT 'pgtenant-op:$name'");
            } catch (\Throwable $e) {
                fwrite(STDERR, "marker $name: {$e->getMessage()}\n");
            }
        }
        $rec = ['name' => $name, 'kind' => $kind, 'ok' => true, 'sqlstate' => '', 'error' => '', 'rows' => null];
        try {
            $rec['rows'] = $fn();
        } catch (\Throwable $e) {
            $rec['ok'] = false;
            $rec['sqlstate'] = self::sqlstate($e);
            $rec['error'] = substr($e->getMessage(), 0, 500);
            fwrite(STDERR, "op $name: $e\n");
        }
        $this->ops[] = $rec;
        return $rec;
    }

    public function dump(): void
    {
        echo json_encode(['client' => $this->client, 'version' => $this->version, 'ops' => $this->ops]), "\n";
    }
}

$T = (int)Env::get('PGT_TENANT', '42');
$O = (int)Env::get('PGT_OTHER', '7');
$dsn = sprintf('pgsql:host=%s;port=%s;dbname=%s;sslmode=disable;application_name=clients-php', Env::get('PGT_HOST', '127.0.0.1'),
    Env::get('PGT_PORT', '5432'), Env::get('PGT_DB', 'app'));
